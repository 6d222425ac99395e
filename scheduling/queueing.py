"""Hands delivery ids to the broker. Call only after the rows are committed.

Backpressure: a channel's queue holds at most DISPATCH_MAX_QUEUED_PER_CHANNEL deliveries, and
nothing is published to a channel whose breaker is open. Deliveries kept back are marked
held in the database and published by later dispatcher ticks as room appears, so a
provider outage leaves Redis small and the database keeps the backlog. Once the breaker's
open period is over, one delivery is published to probe the provider, so the channel
reopens by itself even when nothing else is in flight (a long outage).
"""

import logging
from collections import defaultdict

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from channels_app.breaker import breaker_feed
from channels_app.shared_state import redis_client
from scheduling.models import Delivery, DeliveryStatus

logger = logging.getLogger(__name__)

# Give up quickly when Redis is down: the rows stay queued in the database, and the
# reaper hands them to the broker again once it is back.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5}

# Tasks are published by name, so that a module never imports the tasks module above it
# (tasks.py imports the functions it runs). tasks.py registers each under these names.
DELIVER_TASK = "scheduling.deliver_message"
CARE_TEAM_ALERT_TASK = "scheduling.send_care_team_alert"


def publish_task(name: str, args: tuple, *, queue: str, countdown: float | None = None) -> None:
    """Sends the task named `name` to `queue`; raises kombu's OperationalError when the
    broker stays unreachable through PUBLISH_RETRY_POLICY."""
    current_app.send_task(
        name, args, queue=queue, countdown=countdown, retry_policy=PUBLISH_RETRY_POLICY
    )


def enqueue_deliveries(items: list[tuple[int, str]], countdown: float | None = None) -> int:
    """Publish deliver_message for the (delivery id, channel) pairs, in batches of up to
    DELIVERY_BATCH_SIZE per channel; returns how many deliveries went out."""
    by_channel: dict[str, list[int]] = defaultdict(list)
    for delivery_id, channel in items:
        by_channel[channel].append(delivery_id)
    size = settings.DELIVERY_BATCH_SIZE
    published = 0
    for channel, ids in by_channel.items():
        for start in range(0, len(ids), size):
            batch = ids[start : start + size]
            try:
                publish_task(
                    DELIVER_TASK,
                    (batch,),
                    queue=settings.DELIVERY_QUEUES[channel],
                    countdown=countdown,
                )
            except OperationalError:
                logger.warning("broker unreachable; %d deliveries left for the reaper "
                               "(first id %s)", len(items) - published, batch[0])  # fmt: skip
                return published
            published += len(batch)
    return published


def requeue_waiting(outcomes) -> None:
    """Publishes again the deliveries of a batch that must come back later: those waiting
    for a rate-limit slot or a breaker go together (delivery.py gives each group one wait,
    the soonest of its members'), a retry after a failure goes alone, at its own backoff."""
    together: dict[tuple[str, float], list[int]] = defaultdict(list)
    for outcome in outcomes:
        if outcome.retry_in is None:
            continue
        if outcome.waiting_for:
            together[(outcome.channel, outcome.retry_in)].append(outcome.delivery_id)
        else:
            enqueue_deliveries([(outcome.delivery_id, outcome.channel)], outcome.retry_in)
    for (channel, wait), ids in together.items():
        enqueue_deliveries([(pk, channel) for pk in ids], countdown=wait)


def batch_ids(argument) -> list[int] | None:
    """deliver_message's argument as a list of ids, or None when it is not one."""
    ids = [argument] if isinstance(argument, int) else argument
    if not isinstance(ids, list | tuple) or not ids:
        return None
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        return None
    return list(ids)


def queue_room(channel: str) -> int:
    """How many more deliveries the channel's queue may take now: none while its breaker is
    open, one when that one is to probe the provider. Each waiting task is counted as a
    full batch: an upper bound, so the cap holds."""
    try:
        feed = breaker_feed(channel)
        if feed == "shut":
            return 0
        waiting = redis_client().llen(settings.DELIVERY_QUEUES[channel])
    except RedisError:
        return 0
    room = max(0, settings.DISPATCH_MAX_QUEUED_PER_CHANNEL - waiting * settings.DELIVERY_BATCH_SIZE)
    return min(room, 1) if feed == "probe" else room


def enqueue_with_backpressure(items: list[tuple[int, str]]) -> int:
    """Publishes what each channel's queue has room for; holds the rest in the database."""
    by_channel: dict[str, list[int]] = defaultdict(list)
    for delivery_id, channel in items:
        by_channel[channel].append(delivery_id)
    published = 0
    for channel, ids in by_channel.items():
        room = queue_room(channel)
        published += enqueue_deliveries([(pk, channel) for pk in ids[:room]])
        if ids[room:]:
            Delivery.objects.filter(pk__in=ids[room:]).update(held_at=timezone.now())
            logger.info("%s: %d deliveries held back (queue full or breaker open)",
                        channel, len(ids) - room)  # fmt: skip
    return published


def release_held_deliveries() -> int:
    """Publishes held deliveries, the most urgent priority first and the oldest first
    within it, as far as each channel has room; those past
    their window are expired first, so that none of them is published as the probe. An
    idle tick (nothing held) makes one read and no write."""
    held = Delivery.objects.filter(status=DeliveryStatus.QUEUED, held_at__isnull=False)
    channels = list(held.values_list("channel", flat=True).distinct())
    if channels:
        expire_held_past_window(timezone.now())
    released = 0
    for channel in channels:
        room = queue_room(channel)
        if room:
            released += _release(channel, room)
    return released


def expire_held_past_window(now) -> int:
    """Expires, in one UPDATE, the held deliveries whose window has passed: what their tasks
    would do, without a task each."""
    expired = Delivery.objects.filter(
        status=DeliveryStatus.QUEUED, held_at__isnull=False, expires_at__lt=now
    ).update(
        status=DeliveryStatus.EXPIRED,
        held_at=None,
        updated_at=now,
        error_code="window_passed",
        error_text="its delivery window passed while it was held",
    )
    if expired:
        logger.info("%d held deliveries expired: their window passed", expired)
    return expired


@transaction.atomic
def _release(channel: str, room: int) -> int:
    ids = list(
        Delivery.objects.filter(status=DeliveryStatus.QUEUED, held_at__isnull=False,
                                channel=channel)
        .order_by("priority", "next_attempt_at")
        .select_for_update(skip_locked=True)
        .values_list("pk", flat=True)[:room]
    )  # fmt: skip
    Delivery.objects.filter(pk__in=ids).update(held_at=None)
    transaction.on_commit(lambda: enqueue_deliveries([(pk, channel) for pk in ids]))
    return len(ids)
