"""Writes to scheduled messages: create, cancel, pause. Views, admin and tasks call these."""

import logging
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from channels_app.content import validate_content
from channels_app.registry import ADDRESSED_CHANNELS
from patients.models import Channel, Contact, Patient
from scheduling.models import (
    Delivery,
    DeliveryStatus,
    MessageStatus,
    ScheduledMessage,
)
from scheduling.recurrence import next_occurrence_after, parse_rule

logger = logging.getLogger(__name__)


def reachable_contact(patient: Patient, channel: str) -> Contact | None:
    return patient.contacts.filter(channel=channel, blocked_at__isnull=True).order_by("id").first()


def choose_channel(patient: Patient, requested: str | None) -> str:
    """The requested channel, else the patient's preferred one, else the web inbox."""
    if requested:
        if requested not in Channel.values:
            raise ValidationError({"channel": f"{requested!r} is not a channel."})
        if requested in ADDRESSED_CHANNELS and reachable_contact(patient, requested) is None:
            raise ValidationError({"channel": f"The patient has no unblocked {requested} contact."})
        return requested
    preferred = patient.preferred_channel
    if preferred not in ADDRESSED_CHANNELS or reachable_contact(patient, preferred):
        return preferred
    return Channel.WEB


def message_schedule(
    *,
    patient: Patient,
    content: str,
    starts_at: datetime,
    format: str = "text",
    recurrence: str = "",
    channel: str | None = None,
    priority: int = 3,
    zone_name: str = "",
    delivery_window_seconds: int | None = None,
    metadata: dict | None = None,
) -> ScheduledMessage:
    """Validates everything first, then saves one row; bad input saves nothing."""
    if timezone.is_naive(starts_at):
        raise ValidationError({"starts_at": "The time needs a UTC offset or time zone."})
    if patient.opted_out_at is not None:
        raise ValidationError({"patient": "The patient has opted out of messages."})
    chosen = choose_channel(patient, channel)
    validate_content(chosen, content, format)
    message = ScheduledMessage(
        organization_id=patient.organization_id,
        patient=patient,
        channel=chosen,
        content=content,
        format=format,
        priority=priority,
        starts_at=starts_at,
        next_run_at=starts_at,
        recurrence=recurrence.strip(),
        timezone=zone_name,
        metadata=metadata or {},
    )
    if delivery_window_seconds is not None:
        message.delivery_window_seconds = delivery_window_seconds
    message.full_clean()
    validate_recurrence(message)
    message.save()
    logger.info("message %s scheduled for patient %s on %s", message.pk, patient.pk, chosen)
    return message


def validate_recurrence(message: ScheduledMessage) -> None:
    if not message.recurrence:
        return
    try:
        parse_rule(message.recurrence, starts_at=message.starts_at, zone_name=message.zone_name)
    except (ValueError, TypeError) as exc:
        raise ValidationError({"recurrence": f"Not a valid RRULE: {exc}."}) from exc


def next_run_after(message: ScheduledMessage, occurrence: datetime, now: datetime):
    """The next occurrence after both this one and now: missed ones are not sent in a burst."""
    if not message.recurrence:
        return None
    return next_occurrence_after(
        message.recurrence,
        starts_at=message.starts_at,
        zone_name=message.zone_name,
        after=max(occurrence, now),
    )


@transaction.atomic
def message_cancel(message: ScheduledMessage, *, reason: str = "") -> int:
    """Stops the message and the deliveries not yet handed to a provider."""
    ScheduledMessage.objects.filter(pk=message.pk).update(
        status=MessageStatus.CANCELLED, next_run_at=None, status_reason=reason,
        updated_at=timezone.now(),
    )  # fmt: skip
    message.refresh_from_db()
    return Delivery.objects.filter(message=message, status=DeliveryStatus.QUEUED).update(
        status=DeliveryStatus.CANCELLED,
        error_code="message_cancelled",
        updated_at=timezone.now(),
    )


def patient_pause_channel(patient_id: int, channel: str, *, reason: str) -> int:
    """Pauses the patient's active messages on one channel (for example after a block)."""
    paused = ScheduledMessage.objects.filter(
        patient_id=patient_id, channel=channel, status=MessageStatus.ACTIVE
    ).update(status=MessageStatus.PAUSED, status_reason=reason, updated_at=timezone.now())
    logger.info("patient %s: %d messages on %s paused", patient_id, paused, channel)
    return paused
