"""Celery tasks: each calls a plain function."""

from celery import shared_task

from operations.alerting import evaluate_alerts as run_evaluation


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
