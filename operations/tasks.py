"""Celery tasks of the system's own jobs: each calls a plain function. Their runs are
recorded by operations.signals."""

import logging

from celery import shared_task

from operations import job_history, job_types, retention, scheduled_jobs
from operations.models import ScheduledJob

logger = logging.getLogger(__name__)


@shared_task(name="operations.clean_up_old_data")
def clean_up_old_data() -> dict[str, int]:
    return retention.clean_up_old_data().as_result()


@shared_task(name=scheduled_jobs.RUN_JOB_TASK, bind=True)
def run_job(self, scheduled_job_id: int) -> object:
    """Runs a custom job; a failure is retried with a doubling delay up to the job's
    max_retries, then recorded as failed."""
    job = ScheduledJob.objects.filter(pk=scheduled_job_id).first()
    if job is None:
        logger.warning("custom job %s: deleted before it ran", scheduled_job_id)
        return None
    job_history.label_run(self.request.id, job.history_name)
    try:
        return job_types.run(job.job_type, job.payload)
    except job_types.PermanentJobError:
        raise
    except Exception as error:
        # A handler may fail in any way; each failure is retried, up to the job's own
        # count, then the task fails with the handler's error.
        if self.request.retries >= job.max_retries:
            raise
        delay = scheduled_jobs.retry_delay(self.request.retries)
        logger.warning(
            "custom job %s: failed (%s), retrying in %.0f s", job.pk, type(error).__name__, delay
        )
        raise self.retry(exc=error, countdown=delay, max_retries=job.max_retries) from error
