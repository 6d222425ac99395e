"""Hands delivery ids to the broker. Call only after the rows are committed.

The broker holds only work to do now. A channel's queue takes at most
DISPATCH_QUEUE_SECONDS of sends at its rate limit (capped by
DISPATCH_MAX_QUEUED_PER_CHANNEL), and nothing while its breaker is open. Everything else
waits in the database, marked held with the moment it may go (next_attempt_at): the
backlog of a burst, a delivery waiting for a rate-limit slot or for the breaker, a retry
after its backoff. The dispatcher's tick publishes what is due as room appears, the most
urgent priority first, so a worker that dies holds no waiting work (only its sends in
flight, which their lease covers) and an outage cannot flood Redis. Once the breaker's
open period is over, one delivery is published to probe the provider, so the channel
reopens by itself even when nothing else is in flight (a long outage).

Each queue is a priority queue (one Redis list per step; workers take from the most
urgent step first): priority 1 goes ahead of a routine backlog in the queue as well.
"""

import contextlib
import logging
import math
from collections import defaultdict
from contextlib import contextmanager
from datetime import datetime

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError
from redis.exceptions import LockError, RedisError

from channels_app.breaker import breaker_feed
from channels_app.ratelimit import limit_for
from channels_app.shared_state import redis_client
from scheduling import metrics
from scheduling.models import Delivery, DeliveryStatus

logger = logging.getLogger(__name__)

# Give up quickly when Redis is down: the rows stay queued in the database, and the
# reaper hands them to the broker again once it is back.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5}

# Tasks are published by name, so that a module never imports the tasks module above it
# (tasks.py imports the functions it runs). tasks.py registers each under these names.
DELIVER_TASK = "scheduling.deliver_message"
CARE_TEAM_ALERT_TASK = "scheduling.send_care_team_alert"

# A message's priority (1 the most urgent) to the broker's (0 is taken first; one Redis
# list per step of CELERY_BROKER_TRANSPORT_OPTIONS["priority_steps"]).
BROKER_PRIORITY = {1: 0, 2: 3, 3: 6, 4: 9, 5: 9}
# A send taken over from a lost worker is late already: it goes with the most urgent.
TAKEN_OVER = 1
# A process that dies while filling a queue gives its turn back after this.
FEEDING_LOCK_SECONDS = 10


def publish_task(
    name: str, args: tuple, *, queue: str, countdown: float | None = None, priority: int = 0
) -> None:
    """Sends the task named `name` to `queue`; raises kombu's OperationalError when the
    broker stays unreachable through PUBLISH_RETRY_POLICY."""
    current_app.send_task(name, args, queue=queue, countdown=countdown, priority=priority,
                          retry_policy=PUBLISH_RETRY_POLICY)  # fmt: skip


def queue_length(queue: str) -> int:
    """Tasks waiting in a queue, over all its priority lists."""
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    steps = options["priority_steps"][1:]  # step 0 is the list named after the queue
    with redis_client().pipeline(transaction=False) as pipe:
        for name in [queue, *(f"{queue}{options['sep']}{step}" for step in steps)]:
            pipe.llen(name)
        return sum(pipe.execute())


def enqueue_deliveries(items: list[tuple[int, str, int]]) -> int:
    """Publish deliver_message for the (delivery id, channel, priority) triples, in
    batches of up to DELIVERY_BATCH_SIZE of one channel and priority, the most urgent
    first; returns how many deliveries went out."""
    groups: dict[tuple[int, str], list[int]] = defaultdict(list)
    for delivery_id, channel, priority in items:
        groups[(priority, channel)].append(delivery_id)
    size = settings.DELIVERY_BATCH_SIZE
    published = 0
    for (priority, channel), ids in sorted(groups.items()):
        for start in range(0, len(ids), size):
            batch = ids[start : start + size]
            try:
                publish_task(DELIVER_TASK, (batch,), queue=settings.DELIVERY_QUEUES[channel],
                             priority=BROKER_PRIORITY.get(priority, 9))  # fmt: skip
            except OperationalError:
                logger.warning("broker unreachable; %d deliveries left for the reaper "
                               "(first id %s)", len(items) - published, batch[0])  # fmt: skip
                return published
            published += len(batch)
    return published


def batch_ids(argument) -> list[int] | None:
    """deliver_message's argument as a list of ids, or None when it is not one."""
    ids = [argument] if isinstance(argument, int) else argument
    if not isinstance(ids, list | tuple) or not ids:
        return None
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        return None
    return list(ids)


@contextmanager
def feeding(channel: str):
    """Yields whether this process may fill the channel's queue now: one dispatcher (or
    reaper) at a time measures the room and publishes into it, else two that measured at
    once would both fill the same room and the queue would pass its cap. One that cannot
    get its turn within a second publishes nothing; what it holds goes at the next tick."""
    lock = redis_client().lock(
        f"feeding:{channel}", timeout=FEEDING_LOCK_SECONDS, blocking_timeout=1
    )
    try:
        ours = lock.acquire()
    except RedisError:
        ours = False
    try:
        yield ours
    finally:
        if ours:
            with contextlib.suppress(RedisError, LockError):
                lock.release()


def queue_room(channel: str) -> int:
    """How many more deliveries the channel's queue may take now: none while its breaker is
    open, one when that one is to probe the provider. Each waiting task is counted as a
    full batch: an upper bound, so the cap holds."""
    try:
        feed = breaker_feed(channel)
        if feed == "shut":
            return 0
        waiting = queue_length(settings.DELIVERY_QUEUES[channel])
    except RedisError:
        return 0
    room = max(0, queue_capacity(channel) - waiting * settings.DELIVERY_BATCH_SIZE)
    return min(room, 1) if feed == "probe" else room


def queue_capacity(channel: str) -> int:
    """DISPATCH_QUEUE_SECONDS of sends at the channel's rate (at least one batch), within
    DISPATCH_MAX_QUEUED_PER_CHANNEL. More in the queue would only come back: a task takes
    the rate-limit slots of the next DELIVERY_RATE_INLINE_WAIT_SECONDS and returns the
    rest to the database, and each such round trip costs a claim."""
    cap = settings.DISPATCH_MAX_QUEUED_PER_CHANNEL
    limit = limit_for(channel)
    if limit is None:
        return cap
    paced = math.ceil(limit.per_second * settings.DISPATCH_QUEUE_SECONDS)
    return min(cap, max(paced, settings.DELIVERY_BATCH_SIZE))


def enqueue_with_backpressure(items: list[tuple[int, str, int]]) -> int:
    """Publishes what each channel's queue has room for, the most urgent first; holds the
    rest in the database."""
    by_channel: dict[str, list[tuple[int, str, int]]] = defaultdict(list)
    for item in sorted(items, key=lambda item: item[2]):
        by_channel[item[1]].append(item)
    published = 0
    for channel, waiting in by_channel.items():
        with feeding(channel) as ours:
            room = queue_room(channel) if ours else 0
            published += enqueue_deliveries(waiting[:room])
        if waiting[room:]:
            Delivery.objects.filter(pk__in=[pk for pk, _, _ in waiting[room:]]).update(
                held_at=timezone.now()
            )
            logger.info("%s: %d deliveries wait in the database (queue full or breaker open)",
                        channel, len(waiting) - room)  # fmt: skip
    return published


def release_held_deliveries() -> int:
    """Publishes the held deliveries that are due, the most urgent priority first and the
    longest due first within it, as far as each channel has room; those past their window
    are expired first, so that none of them is published as the probe. An idle tick
    (nothing held) makes one read and no write."""
    now = timezone.now()
    due = Delivery.objects.filter(
        status=DeliveryStatus.QUEUED, held_at__isnull=False, next_attempt_at__lte=now
    )
    channels = list(due.values_list("channel", flat=True).distinct())
    if channels:
        expire_held_past_window(now)
    released = 0
    for channel in channels:
        with feeding(channel) as ours:
            room = queue_room(channel) if ours else 0
            if room:
                released += _release(channel, room, now)
    if released:
        logger.info("%d held deliveries published", released)
    return released


def expire_held_past_window(now) -> int:
    """Expires, in one UPDATE per channel, the held deliveries whose window has passed: what
    their tasks would do, without a task each."""
    expired = 0
    for channel in settings.DELIVERY_QUEUES:
        count = Delivery.objects.filter(
            status=DeliveryStatus.QUEUED,
            held_at__isnull=False,
            channel=channel,
            expires_at__lt=now,
        ).update(
            status=DeliveryStatus.EXPIRED,
            held_at=None,
            updated_at=now,
            error_code="window_passed",
            error_text="its delivery window passed while it was held",
        )
        if count:
            metrics.delivery_ended(channel, DeliveryStatus.EXPIRED, "window_passed", count)
        expired += count
    if expired:
        logger.info("%d held deliveries expired: their window passed", expired)
    return expired


@transaction.atomic
def _release(channel: str, room: int, now: datetime) -> int:
    """One priority per tick and channel, the most urgent due: the next tick publishes
    the others, behind it. Workers take tasks in parallel, so a routine task published
    with the urgent ones could take its rate-limit slots first."""
    rows = list(
        Delivery.objects.filter(status=DeliveryStatus.QUEUED, held_at__isnull=False,
                                channel=channel, next_attempt_at__lte=now)
        .order_by("priority", "next_attempt_at")
        .select_for_update(skip_locked=True)
        .values_list("pk", "priority")[:room]
    )  # fmt: skip
    rows = [row for row in rows if row[1] == rows[0][1]] if rows else []
    # Handed to the broker now: the reaper counts a lost task's time from here.
    Delivery.objects.filter(pk__in=[pk for pk, _ in rows]).update(held_at=None, updated_at=now)
    items = [(pk, channel, priority) for pk, priority in rows]
    transaction.on_commit(lambda: enqueue_deliveries(items))
    return len(rows)
