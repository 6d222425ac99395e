"""Turns due scheduled messages into deliveries and hands them to the broker.

Many dispatchers may run at once (overlapping Beat ticks, a second Beat by mistake):
rows are claimed with SELECT ... FOR UPDATE SKIP LOCKED, and a Delivery is unique on
(message, occurrence), so no occurrence is ever delivered twice by the dispatcher.
"""

import logging
import time
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from patients.models import Contact
from scheduling import metrics
from scheduling.bulk_sql import insert_rows, update_rows
from scheduling.models import Delivery, DeliveryStatus, MessageStatus, ScheduledMessage
from scheduling.occurrences import Occurrence, Schedule
from scheduling.queueing import enqueue_with_backpressure, release_held_deliveries

logger = logging.getLogger(__name__)


def due_messages(now: datetime, limit: int, *, urgent: bool):
    """Active messages due by `now`, of priority 1 (urgent) or the others, oldest first,
    skipping rows another dispatcher holds.

    The filters match the partial indexes message_due_urgent_idx and message_due_idx, so
    an idle tick reads only the index entries that are due: none.
    """
    due = ScheduledMessage.objects.filter(status=MessageStatus.ACTIVE, next_run_at__lte=now)
    return (
        (due.filter(priority=1) if urgent else due.exclude(priority=1))
        .order_by("next_run_at")
        .select_related("patient")
        .only(*DISPATCH_FIELDS)
        .select_for_update(skip_locked=True, of=("self",))[:limit]
    )


# What dispatching reads: loading whole rows (the content, the metadata, the patient's
# name and dates) was a fifth of the time of dispatching 10,000 messages.
DISPATCH_FIELDS = (
    "channel", "status", "starts_at", "next_run_at", "next_occurrence_at", "recurrence",
    "timezone", "ignore_quiet_hours", "delivery_window_seconds", "updated_at", "priority",
    "patient__timezone", "patient__quiet_hours_start", "patient__quiet_hours_end",
)  # fmt: skip


def dispatch_due(*, now: datetime | None = None, batch_size: int | None = None) -> int:
    """Dispatches every message due by now, one committed batch at a time."""
    batch_size = batch_size or settings.DISPATCH_BATCH_SIZE
    started, total = time.monotonic(), 0
    while True:
        count = _dispatch_batch(now or timezone.now(), batch_size)
        total += count
        if count < batch_size:
            break
    release_held_deliveries()
    metrics.rows_claimed.inc(total)
    metrics.tick_seconds.observe(time.monotonic() - started)
    if total:
        logger.info("dispatched %d deliveries", total)
    return total


@transaction.atomic
def _dispatch_batch(now: datetime, batch_size: int) -> int:
    # Priority 1 first: after an outage of the scheduler, a backlog of routine messages
    # does not hold up the urgent ones.
    messages = list(due_messages(now, batch_size, urgent=True))
    if len(messages) < batch_size:
        messages += due_messages(now, batch_size - len(messages), urgent=False)
    if not messages:
        return 0
    deliveries = []
    for message in messages:
        deliveries += _deliveries_due(message, now)
        message.updated_at = now
    _assign_contacts(deliveries)
    # Each message's next occurrence, in one statement (scheduling/bulk_sql.py).
    update_rows(ScheduledMessage, messages,
                ["next_occurrence_at", "next_run_at", "status", "updated_at"])  # fmt: skip
    # On conflict (the occurrence already has a delivery) the existing row is left as it
    # is, and is enqueued again only while it is still queued: deliver_message claims it once.
    rows = insert_rows(
        Delivery,
        deliveries,
        unique=["message", "occurrence_at"],
        touch="updated_at",
        returning=["id", "channel", "status", "priority"],
    )
    to_send = [(pk, channel, priority) for pk, channel, status, priority in rows
               if status == DeliveryStatus.QUEUED]  # fmt: skip
    for delivery in deliveries:
        if delivery.status == DeliveryStatus.EXPIRED:
            metrics.delivery_ended(delivery.channel, delivery.status, delivery.error_code)
    transaction.on_commit(partial(enqueue_with_backpressure, to_send))
    return len(messages)


def _assign_contacts(deliveries: list[Delivery]) -> None:
    """Each delivery's contact, found for the whole batch in one query, so the worker does
    not look it up per send (it still checks the contact is verified and not blocked then)."""
    patient_ids = {d.message.patient_id for d in deliveries}
    first = {}
    usable = Contact.objects.filter(
        patient_id__in=patient_ids, blocked_at__isnull=True, verified_at__isnull=False
    )
    for pk, patient_id, channel in usable.order_by("-id").values_list(
        "pk", "patient_id", "channel"
    ):
        first[(patient_id, channel)] = pk
    for delivery in deliveries:
        delivery.contact_id = first.get((delivery.message.patient_id, delivery.channel))


def _deliveries_due(message: ScheduledMessage, now: datetime) -> list[Delivery]:
    """The due occurrence's delivery, after an outage the latest one's, with the missed
    ones before it recorded as expired; and the message advanced past now."""
    schedule = Schedule(message)
    current = Occurrence(message.next_occurrence_at or message.next_run_at, message.next_run_at)
    due = schedule.due(current, now)
    window = timedelta(seconds=message.delivery_window_seconds)
    deliveries = [_delivery(message, due.latest, window)]
    if now > due.latest.send_at + window:
        _expire(deliveries[0], "window_passed", "its delivery window passed before it was sent")
    missed = due.missed[-settings.DISPATCH_MISSED_RECORD_LIMIT :]
    for occurrence in missed:
        delivery = _delivery(message, occurrence, window)
        _expire(delivery, "superseded", "missed; a later occurrence was due by then")
        deliveries.append(delivery)
    if due.missed:
        logger.warning(
            "message %s: %d missed occurrences expired (%d recorded), the latest is sent",
            message.pk, len(due.missed), len(missed),
        )  # fmt: skip
    following = due.following
    message.next_occurrence_at = following.at if following else None
    message.next_run_at = following.send_at if following else None
    if following is None:
        message.status = MessageStatus.COMPLETED
    return deliveries


def _delivery(message: ScheduledMessage, occurrence: Occurrence, window: timedelta) -> Delivery:
    return Delivery(
        message=message,
        occurrence_at=occurrence.at,
        channel=message.channel,
        priority=message.priority,
        next_attempt_at=occurrence.send_at,
        expires_at=occurrence.send_at + window,
    )


def _expire(delivery: Delivery, code: str, text: str) -> None:
    delivery.status = DeliveryStatus.EXPIRED
    delivery.error_code = code
    delivery.error_text = text
