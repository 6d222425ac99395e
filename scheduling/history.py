"""A delivery's status history for the care team, read from what is already recorded:
the row itself, its attempts, and admin actions on it (manual retries)."""

from datetime import datetime

from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType

from scheduling.models import Delivery, DeliveryStatus


def delivery_history(delivery: Delivery) -> list[tuple[datetime, str]]:
    events = [
        (
            delivery.created_at,
            f"created for the occurrence at {delivery.occurrence_at:%Y-%m-%d %H:%M} UTC",
        )
    ]
    for attempt in delivery.attempt_log.all():
        events.append((attempt.started_at, f"attempt {attempt.number} started"))
        if attempt.finished_at:
            reason = f" ({attempt.error_code}: {attempt.error_text})" if attempt.error_code else ""
            outcome = attempt.get_outcome_display()
            events.append((attempt.finished_at, f"attempt {attempt.number}: {outcome}{reason}"))
    content_type = ContentType.objects.get_for_model(Delivery)
    for entry in LogEntry.objects.filter(content_type=content_type, object_id=str(delivery.pk)):
        events.append((entry.action_time, f"{entry.get_change_message()} by user {entry.user_id}"))
    if delivery.held_at and delivery.status == DeliveryStatus.QUEUED:
        events.append(
            (
                delivery.held_at,
                "waiting its turn: a rate-limit slot, the breaker, "
                "a retry's backoff or room in the channel's queue",
            )
        )
    if delivery.status == DeliveryStatus.SENT and delivery.sent_at:
        events.append((delivery.sent_at, "sent"))
    elif delivery.is_final:
        reason = f" ({delivery.error_code}: {delivery.error_text})" if delivery.error_code else ""
        events.append((delivery.updated_at, f"{delivery.get_status_display()}{reason}"))
    return sorted(events, key=lambda event: event[0])


def audit_lines(instance) -> str:
    """The object's audit trail as HTML lines for the admin: when, who, what."""
    from auditlog.models import LogEntry
    from django.utils.html import format_html_join
    from django.utils.safestring import mark_safe

    entries = LogEntry.objects.get_for_object(instance).select_related("actor")[:50]
    return (
        format_html_join(
            mark_safe("<br>"),  # noqa: S308 - a constant
            "{} UTC &nbsp; {} &nbsp; {}",
            (
                (f"{e.timestamp:%Y-%m-%d %H:%M:%S}", e.actor or "system", _describe(e))
                for e in entries
            ),
        )
        or "-"
    )


def _describe(entry) -> str:
    extra = entry.additional_data or {}
    if "action" in extra:
        return extra["action"].replace("_", " ")
    fields = ", ".join(sorted((entry.changes_dict or {}).keys()))
    return (
        f"{entry.get_action_display().lower()}: {fields}" if fields else entry.get_action_display()
    )
