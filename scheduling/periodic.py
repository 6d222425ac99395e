"""The system's periodic tasks, registered in django-celery-beat from this one place."""

from django.conf import settings
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask


def system_periodic_tasks() -> list[tuple[str, str, int]]:
    """(PeriodicTask name, task name, every N seconds)."""
    return [
        ("scheduler: dispatch due messages", "scheduling.dispatch_due",
         settings.SCHEDULER_TICK_SECONDS),
        ("scheduler: reap stuck deliveries", "scheduling.reap_stuck_deliveries",
         settings.DELIVERY_REAPER_SECONDS),
        ("adherence: mark missed doses", "scheduling.mark_missed_doses",
         settings.ACK_CHECK_SECONDS),
        ("bot: retry inbound updates", "channels_app.sweep_inbound_updates",
         settings.INBOUND_RETRY_AFTER_SECONDS),
        # By name: these tasks live in outreach/ and operations/, layers above this one.
        ("companion: plan check-ins", "outreach.plan_check_ins", settings.CHECK_IN_TICK_SECONDS),
        ("operations: evaluate alerts", "operations.evaluate_alerts",
         settings.ALERT_EVALUATION_SECONDS),
        # Hourly: each organization's report of the day before goes once, so a run missed
        # in an outage is made up by the next.
        ("operations: send daily reports", "operations.send_daily_reports", 3600),
        *_backup_task(),
        ("operations: clean up old data", "operations.clean_up_old_data",
         settings.RETENTION_INTERVAL_SECONDS),
    ]  # fmt: skip


def _backup_task() -> list[tuple[str, str, int]]:
    """Only where a destination is configured and BACKUP_ENABLED is on (its default then)."""
    if not settings.BACKUP_ENABLED:
        return []
    every = settings.BACKUP_INTERVAL_HOURS * 3600
    return [("operations: back up the database", "operations.back_up_database", every)]


@transaction.atomic
def register_periodic_tasks() -> list[PeriodicTask]:
    """Idempotent. Intervals follow settings on every run; `enabled` is left as the
    operator set it, so a task switched off in the admin stays off across deploys."""
    registered = []
    for name, task, seconds in system_periodic_tasks():
        interval, _ = IntervalSchedule.objects.get_or_create(
            every=seconds, period=IntervalSchedule.SECONDS
        )
        periodic, _ = PeriodicTask.objects.update_or_create(
            name=name,
            defaults={
                "task": task,
                "interval": interval,
                "queue": settings.SCHEDULER_QUEUE,
                # A tick that waited longer than its own interval is stale: the next
                # one does the same work, so an outage does not leave a pile of them.
                "expire_seconds": seconds,
            },
        )
        registered.append(periodic)
    return registered
