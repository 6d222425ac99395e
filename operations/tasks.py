"""Celery tasks of operations/: each calls one plain function. Registered by name in
scheduling/periodic.py, which lies below this layer."""

import logging

from celery import shared_task
from django.conf import settings

from operations import backups, report_mail
from operations.alerting import evaluate_alerts as run_evaluation

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
