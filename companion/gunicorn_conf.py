"""Gunicorn's configuration, the same in the image, compose and Kubernetes:
`gunicorn -c python:companion.gunicorn_conf companion.wsgi:application`.

The worker count is WEB_CONCURRENCY (companion/settings.py), checked like every other
setting; gunicorn would otherwise read that variable itself, unchecked."""

import os

from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "companion.settings")

bind = "0.0.0.0:8000"
workers = settings.WEB_CONCURRENCY
# Workers' liveness files go to /tmp, the one writable place under a read-only root
# filesystem (an emptyDir in Kubernetes, kept in memory).
worker_tmp_dir = "/tmp"  # noqa: S108 - the container's own, not shared with other users
