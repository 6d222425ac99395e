"""Beat's scheduler: django-celery-beat's DatabaseScheduler, and a file for Kubernetes'
liveness probe (deploy/kubernetes/base/beat.yaml).

Beat's loop is tick, sleep (at most the scheduler's max_interval, 5 s), tick. Each tick
that comes back touches BEAT_HEARTBEAT_FILE, so the file's age says whether the loop
still turns: a Beat stuck in a query to a PostgreSQL that stopped answering, or in a
publish to a Redis that did, stops touching it, and the probe restarts the container.
A stopped Beat dispatches nothing, and the alerts it evaluates cannot report it (the
CronJob in alerts-cronjob.yaml does, within five minutes; the probe acts within one).
"""

import logging
from pathlib import Path

from django.conf import settings
from django_celery_beat.schedulers import DatabaseScheduler

logger = logging.getLogger(__name__)


class HeartbeatScheduler(DatabaseScheduler):
    def setup_schedule(self) -> None:
        super().setup_schedule()
        # A container restarted in the same pod finds the last one's file (an emptyDir
        # outlives it): the probe must see this process's ticks only.
        if settings.BEAT_HEARTBEAT_FILE:
            Path(settings.BEAT_HEARTBEAT_FILE).unlink(missing_ok=True)

    def tick(self, *args, **kwargs) -> float:
        interval = super().tick(*args, **kwargs)
        if settings.BEAT_HEARTBEAT_FILE:
            try:
                Path(settings.BEAT_HEARTBEAT_FILE).touch()
            except OSError:
                # A full or read-only disk fails the probe, which is what it should do.
                logger.warning(
                    "beat heartbeat file %s cannot be written", settings.BEAT_HEARTBEAT_FILE
                )
        return interval
