"""prometheus-client's multiprocess mode for prefork workers and gunicorn: each process
writes its metrics to files of its own in PROMETHEUS_MULTIPROC_DIR, and a scrape adds
them up. One directory per node (a worker, the writer, Beat, the web server): a node's
main process forgets the files of earlier runs when it starts, and each child that exits
is marked dead.

Nothing here touches the database or the ORM: it runs before Django's apps are loaded
(gunicorn's master, Celery's worker_init).
"""

import logging
import os
from pathlib import Path

from django.conf import settings
from prometheus_client import multiprocess

logger = logging.getLogger(__name__)


def multiproc_dir() -> str:
    """The directory (PROMETHEUS_MULTIPROC_DIR), or "" outside multiprocess mode.
    prometheus-client reads the same variable itself, when it is first imported."""
    return settings.PROMETHEUS_MULTIPROC_DIR


def prepare_dir() -> None:
    """Creates the directory: prometheus-client writes into it from the first metric on."""
    if path := multiproc_dir():
        Path(path).mkdir(parents=True, exist_ok=True)


def forget_earlier_runs() -> int:
    """Removes the files of every process but this one (the node's main process, before
    it starts its children): counters of an earlier run would otherwise add to this run's.
    Returns how many files went."""
    path = multiproc_dir()
    if not path:
        return 0
    removed = 0
    for file in Path(path).glob("*.db"):
        if not file.stem.endswith(f"_{os.getpid()}"):
            file.unlink(missing_ok=True)
            removed += 1
    if removed:
        logger.info("metrics: %d files of earlier processes removed from %s", removed, path)
    return removed


def process_exited(pid: int) -> None:
    """A child's live gauges go with it; its counters stay, so the node's totals never
    go down."""
    if multiproc_dir():
        multiprocess.mark_process_dead(pid, multiproc_dir())
