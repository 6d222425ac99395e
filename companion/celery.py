"""The Celery app: configuration comes from Django settings (CELERY_* names)."""

import os

from celery import Celery, signals

from companion import worker_probes

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "companion.settings")

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
