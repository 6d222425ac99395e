"""Celery tasks of operations/: each calls one plain function. Registered by name in
scheduling/periodic.py, which lies below this layer."""

import logging

from celery import shared_task
from django.conf import settings

from operations import backups, report_mail

logger = logging.getLogger(__name__)


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
