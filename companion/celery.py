"""The Celery app: configuration comes from Django settings (CELERY_* names)."""

import os

from celery import Celery, signals

from companion import env, worker_probes

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "companion.settings")

# prometheus-client writes into PROMETHEUS_MULTIPROC_DIR from its first metric on, in
# whatever process imports it first: the directory must exist before any app is loaded.
if _metrics_dir := env.string("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(_metrics_dir, exist_ok=True)

app = Celery("companion")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# The liveness and readiness files of Kubernetes' probes (deploy/kubernetes/).
worker_probes.install(app)


@signals.task_prerun.connect
@signals.task_postrun.connect
def _close_old_connections(**kwargs) -> None:
    """What Django does around each request, around each task: drop a connection that is
    broken (a PostgreSQL restart) or past CONN_MAX_AGE, keep a healthy one."""
    from django.db import close_old_connections

    close_old_connections()


# --- Metrics (operations/metrics_*.py, operations/task_metrics.py) ---------------------


@signals.worker_init.connect
def _forget_earlier_metrics(**kwargs) -> None:
    """In the worker's main process, before its pool starts."""
    from operations.metrics_processes import forget_earlier_runs

    forget_earlier_runs()


@signals.worker_ready.connect
def _start_worker_exporter(**kwargs) -> None:
    from operations.metrics_exposition import start_exporter

    start_exporter("worker")


@signals.beat_init.connect
def _start_beat_exporter(**kwargs) -> None:
    from operations.metrics_exposition import start_exporter
    from operations.metrics_processes import forget_earlier_runs

    forget_earlier_runs()
    start_exporter("beat")


@signals.worker_process_shutdown.connect
def _pool_process_exited(pid: int, **kwargs) -> None:
    from operations.metrics_processes import process_exited

    process_exited(pid)


@signals.after_task_publish.connect
def _task_published(sender: str = "", **kwargs) -> None:
    from operations.task_metrics import task_published

    task_published(sender or "unknown")


@signals.task_prerun.connect
def _task_started(task_id: str, **kwargs) -> None:
    from operations.task_metrics import task_started

    task_started(task_id)


@signals.task_postrun.connect
def _task_ended(task_id: str, task, state: str = "", **kwargs) -> None:
    from operations.task_metrics import task_ended

    task_ended(task_id, task.name, state)
