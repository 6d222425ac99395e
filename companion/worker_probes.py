"""Files a Celery worker keeps for Kubernetes' probes (deploy/kubernetes/).

Liveness: WORKER_HEARTBEAT_FILE is touched every WORKER_HEARTBEAT_SECONDS by a timer of
the worker's own event loop, the loop that takes tasks from the broker and hands them to
the pool. A loop that hangs, or a consumer stuck reconnecting, stops touching it, and
the probe (the file's age) restarts the container. Readiness: WORKER_READY_FILE exists
from Celery's worker_ready until the warm shutdown begins.

Why not `celery inspect ping` against the worker's node name: it goes through the
broker (a Redis outage would fail every worker's probe at once and restart them all),
and every probe starts a new Python process that imports the whole app, in a pod whose
CPU is meant for deliveries. A file's age is read by `stat`, locally and cheaply.
"""

import logging
from pathlib import Path

from celery import bootsteps, signals
from django.conf import settings

logger = logging.getLogger(__name__)


def _remove(name: str) -> None:
    if name:
        Path(name).unlink(missing_ok=True)


class HeartbeatFile(bootsteps.StartStopStep):
    """Touches WORKER_HEARTBEAT_FILE from the worker's timer while the worker runs."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs) -> None:
        super().__init__(worker, **kwargs)
        self.path = Path(settings.WORKER_HEARTBEAT_FILE) if settings.WORKER_HEARTBEAT_FILE else None
        self.timer_entry = None

    def include_if(self, worker) -> bool:
        return self.path is not None

    def start(self, worker) -> None:
        # A container restarted in the same pod finds the last one's files (an emptyDir
        # outlives it): the probes must see this process's beats only.
        _remove(settings.WORKER_READY_FILE)
        self.beat()
        self.timer_entry = worker.timer.call_repeatedly(
            settings.WORKER_HEARTBEAT_SECONDS, self.beat, priority=10
        )

    def stop(self, worker) -> None:
        if self.timer_entry is not None:
            self.timer_entry.cancel()
        self.path.unlink(missing_ok=True)

    def beat(self) -> None:
        try:
            self.path.touch()
        except OSError:
            # A full or read-only disk fails the probe, which is what it should do; the
            # worker itself goes on.
            logger.warning("worker heartbeat file %s cannot be written", self.path)


def install(app) -> None:
    """Adds the heartbeat step to the app's workers and the readiness file's signals."""
    app.steps["worker"].add(HeartbeatFile)
    signals.worker_ready.connect(_ready, weak=False)
    signals.worker_shutting_down.connect(_not_ready, weak=False)


def _ready(**kwargs) -> None:
    if settings.WORKER_READY_FILE:
        Path(settings.WORKER_READY_FILE).touch()


def _not_ready(**kwargs) -> None:
    _remove(settings.WORKER_READY_FILE)
