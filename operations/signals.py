"""Feeds the job history from Celery's task signals: the system's jobs are recorded
without their tasks (in lower layers) knowing of this app."""

import logging

from celery import signals

from operations import job_history

logger = logging.getLogger(__name__)


@signals.task_prerun.connect
def _job_started(sender=None, task_id=None, **kwargs) -> None:
    if sender is not None and job_history.is_recorded(sender.name):
        job_history.run_started(task_id)


@signals.task_postrun.connect
def _job_finished(sender=None, task_id=None, state=None, retval=None, **kwargs) -> None:
    if sender is None or not job_history.is_recorded(sender.name):
        return
    try:
        job_history.run_finished(job_history.Finished(sender.name, task_id, state, retval))
    except Exception:
        # The job ran; failing to note it must not fail it, nor hide what it did.
        logger.exception("job %s (%s): could not record the run", sender.name, task_id)
