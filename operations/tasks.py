"""Celery tasks of operations/: each calls one plain function. Registered by name in
scheduling/periodic.py, which lies below this layer; their runs are recorded by
operations.signals."""

import logging

from celery import shared_task
from django.conf import settings

from operations import backups, job_history, job_types, report_mail, retention, scheduled_jobs
from operations.alerting import evaluate_alerts as run_evaluation
from operations.models import ScheduledJob

logger = logging.getLogger(__name__)


@shared_task(name="operations.evaluate_alerts")
def evaluate_alerts() -> dict:
    result = run_evaluation()
    return {
        "opened": result.opened,
        "resolved": result.resolved,
        "skipped_rules": result.skipped_rules,
        "notices_sent": result.notices_sent,
        "notices_failed": result.notices_failed,
    }


@shared_task(name="operations.back_up_database")
def back_up_database() -> dict:
    if not settings.BACKUP_ENABLED:
        return {"skipped": "BACKUP_ENABLED is off"}
    try:
        return backups.back_up_and_rotate()
    except backups.BackupError as error:
        logger.error("scheduled backup failed: %s", error)
        raise


@shared_task(name="operations.send_daily_reports")
def send_daily_reports() -> int:
    if not settings.DAILY_REPORTS_ENABLED:
        return 0
    return report_mail.send_daily_reports()


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
