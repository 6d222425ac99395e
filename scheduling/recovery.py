"""Heals deliveries that lost their task: a dead worker, or a broker that lost its queue.

The database is the source of truth and the broker only carries ids, so re-sending an
id is always safe: deliver_message claims a delivery once.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from scheduling.models import Delivery, DeliveryStatus
from scheduling.queueing import TAKEN_OVER, enqueue_deliveries, enqueue_with_backpressure

logger = logging.getLogger(__name__)

REAP_BATCH = 1000


@dataclass(frozen=True)
class ReapResult:
    lease_expired: int
    requeued: int


@transaction.atomic
def reap_stuck_deliveries(*, now: datetime | None = None) -> ReapResult:
    now = now or timezone.now()
    # A send whose worker died: queue it again; deliver() marks the open attempt
    # "interrupted" when it claims the delivery.
    expired_leases = [
        (pk, channel, TAKEN_OVER)
        for pk, channel in Delivery.objects.filter(
            status=DeliveryStatus.SENDING, lease_until__lt=now
        )
        .select_for_update(skip_locked=True)
        .values_list("pk", "channel")[:REAP_BATCH]
    ]
    # A delivery handed to the broker (queued, not held) whose task never ran: lost with
    # the broker or with a worker that died before claiming it, or never published.
    # Handing it over writes updated_at; the broker holds only work due now, so a task
    # waits seconds, not DELIVERY_REQUEUE_AFTER_SECONDS.
    overdue = now - timedelta(seconds=settings.DELIVERY_REQUEUE_AFTER_SECONDS)
    lost = list(
        Delivery.objects.filter(
            status=DeliveryStatus.QUEUED, held_at__isnull=True, updated_at__lt=overdue
        )
        .select_for_update(skip_locked=True)
        .values_list("pk", "channel", "priority")[:REAP_BATCH]
    )
    # Touching updated_at gives each a fresh grace period before the next reap.
    Delivery.objects.filter(pk__in=[pk for pk, _, _ in lost]).update(updated_at=now)
    items = expired_leases + lost
    if items:
        # Sends cut short go straight back, ahead of any backlog (they are late already);
        # lost ones wait their turn like new ones.
        transaction.on_commit(partial(enqueue_deliveries, expired_leases))
        transaction.on_commit(partial(enqueue_with_backpressure, lost))
        logger.warning(
            "reaper: %d sends lost their worker, %d queued deliveries lost their task",
            len(expired_leases), len(lost),
        )  # fmt: skip
    return ReapResult(lease_expired=len(expired_leases), requeued=len(lost))
