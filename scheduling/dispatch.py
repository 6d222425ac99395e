"""Turns due scheduled messages into deliveries and hands them to the broker.

Many dispatchers may run at once (overlapping Beat ticks, a second Beat by mistake):
rows are claimed with SELECT ... FOR UPDATE SKIP LOCKED, and a Delivery is unique on
(message, occurrence), so no occurrence is ever delivered twice by the dispatcher.
"""

import logging
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from scheduling.models import Delivery, MessageStatus, ScheduledMessage
from scheduling.queueing import enqueue_deliveries
from scheduling.services import next_run_after

logger = logging.getLogger(__name__)


def due_messages(now: datetime, limit: int):
    """Active messages due by `now`, oldest first, skipping rows another dispatcher holds.

    The filter matches the partial index message_due_idx, so an idle tick reads only
    the index entries that are due: none.
    """
    return (
        ScheduledMessage.objects.filter(status=MessageStatus.ACTIVE, next_run_at__lte=now)
        .order_by("next_run_at")
        .select_related("patient")
        .select_for_update(skip_locked=True, of=("self",))[:limit]
    )


def dispatch_due(*, now: datetime | None = None, batch_size: int | None = None) -> int:
    """Dispatches every message due by now, one committed batch at a time."""
    batch_size = batch_size or settings.DISPATCH_BATCH_SIZE
    total = 0
    while True:
        count = _dispatch_batch(now or timezone.now(), batch_size)
        total += count
        if count < batch_size:
            break
    if total:
        logger.info("dispatched %d deliveries", total)
    return total


@transaction.atomic
def _dispatch_batch(now: datetime, batch_size: int) -> int:
    messages = list(due_messages(now, batch_size))
    if not messages:
        return 0
    deliveries = [
        Delivery(
            message=message,
            occurrence_at=message.next_run_at,
            channel=message.channel,
            next_attempt_at=message.next_run_at,
            expires_at=message.next_run_at + timedelta(seconds=message.delivery_window_seconds),
        )
        for message in messages
    ]
    # On conflict (the occurrence already has a delivery) the existing row comes back
    # and is enqueued again, which is harmless: deliver_message claims it only once.
    deliveries = Delivery.objects.bulk_create(
        deliveries,
        update_conflicts=True,
        unique_fields=["message", "occurrence_at"],
        update_fields=["updated_at"],
    )
    for message in messages:
        message.next_run_at = next_run_after(message, message.next_run_at, now)
        if message.next_run_at is None:
            message.status = MessageStatus.COMPLETED
        message.updated_at = now
    ScheduledMessage.objects.bulk_update(messages, ["next_run_at", "status", "updated_at"])
    transaction.on_commit(
        partial(enqueue_deliveries, [(delivery.pk, delivery.channel) for delivery in deliveries])
    )
    return len(messages)
