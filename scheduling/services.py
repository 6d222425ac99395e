"""Writes to scheduled messages: create, cancel, pause. Views, admin and tasks call these."""

import logging
from datetime import datetime, timedelta
from functools import partial
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from channels_app.content import validate_content
from channels_app.registry import ADDRESSED_CHANNELS
from patients.audit import record_action
from patients.inbox_links import inbox_links_revoke
from patients.models import Channel, Contact, Patient
from scheduling import metrics
from scheduling.attachments import Upload, attachment_check, attachment_save
from scheduling.message_templates import find_template, render_template
from scheduling.models import (
    Delivery,
    DeliveryStatus,
    MessageKind,
    MessageStatus,
    ScheduledMessage,
)
from scheduling.occurrences import Schedule
from scheduling.queueing import enqueue_deliveries
from scheduling.recurrence import (
    check_rule_is_practical,
    local_wall_time,
    resolve_local,
    rule_parts,
)
from scheduling.template_syntax import template_parameters

logger = logging.getLogger(__name__)


def reachable_contact(patient: Patient, channel: str) -> Contact | None:
    """The contact a message on the channel goes to: verified (patients.contacts) and not
    blocked. An address the care team typed and nobody confirmed is never written to."""
    usable = patient.contacts.filter(
        channel=channel, blocked_at__isnull=True, verified_at__isnull=False
    )
    return usable.order_by("id").first()


def channel_order(patient: Patient) -> list[str]:
    """The patient's preferred channel, then the fallback order, then the web inbox."""
    order = [patient.preferred_channel, *settings.CHANNEL_FALLBACK_ORDER, Channel.WEB]
    return list(dict.fromkeys(order))


def choose_channel(patient: Patient, requested: str | None) -> str:
    """The requested channel, else the first in the patient's order with a verified,
    unblocked contact; the web inbox always qualifies."""
    if requested:
        if requested not in Channel.values:
            raise ValidationError({"channel": f"{requested!r} is not a channel."})
        if requested in ADDRESSED_CHANNELS and reachable_contact(patient, requested) is None:
            raise ValidationError(
                {"channel": f"The patient has no verified, unblocked {requested} contact."}
            )
        return requested
    usable = set(
        patient.contacts.filter(blocked_at__isnull=True, verified_at__isnull=False).values_list(
            "channel", flat=True
        )
    )
    for channel in channel_order(patient):
        if channel not in ADDRESSED_CHANNELS or channel in usable:
            return channel
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
    ignore_quiet_hours: bool = False,
    metadata: dict | None = None,
    kind: str = MessageKind.GENERAL,
    attachment: Upload | None = None,
) -> ScheduledMessage:
    """Validates everything first, then saves one row (and the attachment's file and row);
    bad input saves nothing."""
    if timezone.is_naive(starts_at):
        raise ValidationError({"starts_at": "The time needs a UTC offset or time zone."})
    if patient.opted_out_at is not None:
        raise ValidationError({"patient": "The patient has opted out of messages."})
    chosen = choose_channel(patient, channel)
    validate_content(chosen, content, format, may_be_empty=attachment is not None)
    checked = None
    if attachment is not None:
        checked = attachment_check(chosen, attachment, content, format)
    message = ScheduledMessage(
        organization_id=patient.organization_id,
        patient=patient,
        channel=chosen,
        channel_fixed=bool(channel),
        content=content,
        format=format,
        priority=priority,
        starts_at=starts_at.replace(microsecond=0),  # rules count in whole seconds
        recurrence=recurrence.strip(),
        timezone=zone_name,
        ignore_quiet_hours=ignore_quiet_hours,
        metadata=metadata or {},
        kind=kind,
    )
    if delivery_window_seconds is not None:
        message.delivery_window_seconds = delivery_window_seconds
    # A photo may go without a text (validate_content checked the text for its channel).
    without_text = ["content"] if attachment is not None and not content else []
    message.full_clean(exclude=["next_run_at", "next_occurrence_at", *without_text])
    validate_recurrence(message)
    message_plan_next(message, now=timezone.now())
    if message.status != MessageStatus.ACTIVE:
        raise ValidationError({"starts_at": "The schedule has no occurrence still to send."})
    with transaction.atomic():
        message.save()
        if attachment is not None:
            attachment_save(message, attachment, checked)
    logger.info("message %s scheduled for patient %s on %s", message.pk, patient.pk, chosen)
    return message


def message_schedule_from_template(
    *, patient: Patient, template: str, params: dict[str, object] | None = None, **kwargs
) -> ScheduledMessage:
    """A message written from a template in the patient's language ({name} is filled in
    from the patient unless given); a missing or unknown parameter is an error now."""
    row = find_template(patient.organization_id, template, patient.language)
    params = dict(params or {})
    if "name" in template_parameters(row.body):
        params.setdefault("name", patient.name)
    metadata = {**(kwargs.pop("metadata", None) or {}), "template": template,
                "template_language": row.language}  # fmt: skip
    return message_schedule(patient=patient, content=render_template(row, params),
                            format=row.format, metadata=metadata, **kwargs)  # fmt: skip


def validate_recurrence(message: ScheduledMessage) -> None:
    """A clear error for a rule that does not parse, or one that would flood a patient."""
    if not message.recurrence:
        return
    try:
        parts = rule_parts(message.recurrence)
        check_rule_is_practical(
            message.recurrence, starts_at=message.starts_at, zone_name=message.zone_name
        )
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValidationError({"recurrence": f"Not a valid RRULE: {exc}."}) from exc
    if parts.get("FREQ", "").upper() == "SECONDLY" and not settings.SCHEDULER_ALLOW_SECONDLY:
        raise ValidationError({"recurrence": "FREQ=SECONDLY is not allowed; use MINUTELY."})


def message_plan_next(message: ScheduledMessage, *, now: datetime) -> None:
    """Sets the next occurrence from now (not saved): at creation, and when the rule, its
    start, the time zone or the quiet hours change. Nothing missed is sent in a burst."""
    upcoming = Schedule(message).first(not_before=now)
    window = timedelta(seconds=message.delivery_window_seconds)
    if upcoming is not None and upcoming.send_at + window < now:
        upcoming = None  # a one-time message whose time, and window, have passed
    if upcoming is None:
        message.next_occurrence_at = message.next_run_at = None
        if message.status in (MessageStatus.ACTIVE, MessageStatus.PAUSED):
            message.status = MessageStatus.COMPLETED
        return
    message.next_occurrence_at, message.next_run_at = upcoming.at, upcoming.send_at


@transaction.atomic
def patient_reschedule(patient: Patient, *, previous_zone: str | None = None) -> int:
    """After the patient's time zone or quiet hours changed: messages read in the patient's
    zone keep their local wall-clock times (08:00 stays 08:00 in the new zone), and every
    active or paused one gets its next occurrence again."""
    now = timezone.now()
    messages = list(
        ScheduledMessage.objects.select_for_update()
        .select_related("patient")
        .filter(patient=patient, status__in=[MessageStatus.ACTIVE, MessageStatus.PAUSED])
    )
    for message in messages:
        message.patient = patient
        if previous_zone and previous_zone != patient.timezone and not message.timezone:
            wall = local_wall_time(message.starts_at, ZoneInfo(previous_zone))
            message.starts_at = resolve_local(wall, patient.zone)
        message_plan_next(message, now=now)
        message.updated_at = now
    ScheduledMessage.objects.bulk_update(
        messages, ["starts_at", "next_occurrence_at", "next_run_at", "status", "updated_at"]
    )
    logger.info("patient %s: %d messages rescheduled", patient.pk, len(messages))
    return len(messages)


@transaction.atomic
def message_cancel(message: ScheduledMessage, *, reason: str = "", actor=None) -> int:
    """Stops the message and the deliveries not yet handed to a provider."""
    ScheduledMessage.objects.filter(pk=message.pk).update(
        status=MessageStatus.CANCELLED, next_run_at=None, status_reason=reason[:255],
        updated_at=timezone.now(),
    )  # fmt: skip
    message.refresh_from_db()
    record_action(message, "cancel", actor=actor)
    queued = Delivery.objects.filter(message=message, status=DeliveryStatus.QUEUED)
    cancelled = 0
    # A message's deliveries may be on several channels (a blocked one moves the message).
    for channel in set(queued.values_list("channel", flat=True)):
        count = queued.filter(channel=channel).update(
            status=DeliveryStatus.CANCELLED,
            error_code="message_cancelled",
            updated_at=timezone.now(),
        )
        metrics.delivery_ended(channel, DeliveryStatus.CANCELLED, "message_cancelled", count)
        cancelled += count
    return cancelled


@transaction.atomic
def patient_deactivate(patient: Patient, *, actor, reason: str) -> int:
    """What deleting a patient means for a care team (API and admin alike): the patient
    gets no more messages (as if they had opted out), their active and paused ones are
    cancelled with `reason` and their inbox link stops working; the patient, the
    deliveries and the trail are kept. Returns how many messages were cancelled."""
    now = timezone.now()
    patient.opted_out_at = patient.opted_out_at or now
    patient.deactivated_at = patient.deactivated_at or now
    patient.save(update_fields=["opted_out_at", "deactivated_at", "updated_at"])
    inbox_links_revoke(patient=patient, actor=actor)
    pending = list(
        patient.scheduled_messages.filter(status__in=[MessageStatus.ACTIVE, MessageStatus.PAUSED])
    )
    for message in pending:
        message_cancel(message, reason=reason, actor=actor)
    logger.info("patient %s deactivated, %d messages cancelled", patient.pk, len(pending))
    return len(pending)


SENDABLE_STATUSES = (MessageStatus.ACTIVE, MessageStatus.PAUSED, MessageStatus.COMPLETED)


@transaction.atomic
def message_send_now(message: ScheduledMessage, *, actor=None) -> Delivery:
    """One delivery of the message right now, outside its schedule. A pending one-time
    message is thereby sent and completes; a recurring one keeps its schedule."""
    message = ScheduledMessage.objects.select_for_update().get(pk=message.pk)
    if message.status not in SENDABLE_STATUSES:
        raise ValidationError({"status": f"A {message.status} message cannot be sent."})
    if message.patient.opted_out_at is not None:
        raise ValidationError({"patient": "The patient has opted out of messages."})
    now = timezone.now().replace(microsecond=0)
    delivery, _ = Delivery.objects.get_or_create(
        message=message, occurrence_at=now,
        defaults={"channel": message.channel, "next_attempt_at": now, "priority": message.priority,
                  "expires_at": now + timedelta(seconds=message.delivery_window_seconds)},
    )  # fmt: skip
    if not message.recurrence and message.status == MessageStatus.ACTIVE:
        message.status, message.next_run_at, message.next_occurrence_at = (
            MessageStatus.COMPLETED, None, None)  # fmt: skip
        message.save(update_fields=["status", "next_run_at", "next_occurrence_at", "updated_at"])
    record_action(message, "send_now", actor=actor, delivery=delivery.pk)
    transaction.on_commit(
        partial(enqueue_deliveries, [(delivery.pk, delivery.channel, delivery.priority)])
    )
    return delivery


def message_pause(message: ScheduledMessage, *, actor=None, reason: str = "") -> bool:
    paused = ScheduledMessage.objects.filter(pk=message.pk, status=MessageStatus.ACTIVE).update(
        status=MessageStatus.PAUSED, status_reason=reason[:255], updated_at=timezone.now()
    )
    if paused:
        record_action(message, "pause", actor=actor)
    return bool(paused)


@transaction.atomic
def message_resume(message: ScheduledMessage, *, actor=None) -> bool:
    """A paused message goes on from its next occurrence after now (nothing missed is
    sent in a burst)."""
    message = ScheduledMessage.objects.select_for_update().filter(
        pk=message.pk, status=MessageStatus.PAUSED
    ).select_related("patient").first()  # fmt: skip
    if message is None:
        return False
    message.status, message.status_reason = MessageStatus.ACTIVE, ""
    message_plan_next(message, now=timezone.now())
    message.save(update_fields=["status", "status_reason", "next_run_at", "next_occurrence_at",
                                "updated_at"])  # fmt: skip
    record_action(message, "resume", actor=actor)
    return True


RETRYABLE_STATUSES = (DeliveryStatus.FAILED, DeliveryStatus.EXPIRED)


@transaction.atomic
def delivery_retry(delivery: Delivery, *, actor=None) -> bool:
    """Queues a failed or expired delivery again with a fresh attempt budget and window.
    False (nothing done) for any other status, or when its message was cancelled."""
    delivery = (
        Delivery.objects.select_for_update(of=("self",)).select_related("message")
        .filter(pk=delivery.pk, status__in=RETRYABLE_STATUSES).first()
    )  # fmt: skip
    if delivery is None or delivery.message.status == MessageStatus.CANCELLED:
        return False
    now = timezone.now()
    delivery.status = DeliveryStatus.QUEUED
    delivery.attempts_before_retry = delivery.attempts
    delivery.next_attempt_at = now
    delivery.expires_at = now + timedelta(seconds=delivery.message.delivery_window_seconds)
    delivery.held_at = None
    delivery.save(update_fields=["status", "attempts_before_retry", "next_attempt_at",
                                 "expires_at", "held_at", "updated_at"])  # fmt: skip
    transaction.on_commit(
        partial(enqueue_deliveries, [(delivery.pk, delivery.channel, delivery.priority)])
    )
    record_action(delivery.message, "retry", actor=actor, delivery=delivery.pk)
    logger.info("delivery %s queued again by a manual retry", delivery.pk)
    return True


def patient_channel_blocked(patient_id: int, channel: str, *, reason: str) -> dict[str, int]:
    """After a patient blocked us on a channel: their messages that follow their preference
    move to the next channel they can be reached on; those the care team tied to this
    channel are paused. Either way the reason is on the message for the care team."""
    patient = Patient.objects.get(pk=patient_id)
    active = ScheduledMessage.objects.filter(
        patient_id=patient_id, channel=channel, status=MessageStatus.ACTIVE
    )
    now = timezone.now()
    paused = active.filter(channel_fixed=True).update(
        status=MessageStatus.PAUSED, status_reason=reason[:255], updated_at=now
    )
    following = choose_channel(patient, None)
    note = f"{reason}; moved to {following}"[:255]
    moved = active.filter(channel_fixed=False).update(
        channel=following, status_reason=note, updated_at=now
    )
    logger.info("patient %s blocked %s: %d messages paused, %d moved to %s",
                patient_id, channel, paused, moved, following)  # fmt: skip
    return {"paused": paused, "moved": moved}
