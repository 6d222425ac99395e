"""Gunicorn's configuration, the same in the image, compose and Kubernetes:
`gunicorn -c python:companion.gunicorn_conf companion.wsgi:application`.

The worker count is WEB_CONCURRENCY (companion/settings.py), checked like every other
setting; gunicorn would otherwise read that variable itself, unchecked. The hooks keep
prometheus-client's multiprocess files true (operations/metrics_processes.py)."""

import os

from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "companion.settings")

bind = "0.0.0.0:8000"
workers = settings.WEB_CONCURRENCY
# Workers' liveness files go to /tmp, the one writable place under a read-only root
# filesystem (an emptyDir in Kubernetes, kept in memory).
worker_tmp_dir = "/tmp"  # noqa: S108 - the container's own, not shared with other users


def on_starting(server) -> None:
    """In the master, before its workers start: an earlier run's files are not ours."""
    from operations.metrics_processes import forget_earlier_runs

    forget_earlier_runs()


def child_exit(server, worker) -> None:
    from operations.metrics_processes import process_exited

    process_exited(worker.pid)
