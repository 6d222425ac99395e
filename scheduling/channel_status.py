"""What an operator needs to see per channel: breaker, queue depth, backlog, limits."""

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db.models import Count, Q
from redis.exceptions import RedisError

from channels_app.breaker import breaker_display_state, breaker_states
from scheduling.models import Delivery, DeliveryStatus
from scheduling.queueing import queue_length


@dataclass(frozen=True)
class ChannelStatus:
    channel: str
    breaker: str
    consecutive_failures: int
    open_until: datetime | None
    queue_depth: int | None  # None when Redis does not answer
    queued: int
    held: int
    rate_per_second: float | None
    rate_per_recipient_per_second: float | None


def channel_statuses() -> list[ChannelStatus]:
    channels = list(settings.DELIVERY_QUEUES)
    try:
        breakers = breaker_states(channels)
        depths = {c: queue_length(settings.DELIVERY_QUEUES[c]) for c in channels}
    except RedisError:
        breakers, depths = {c: {"state": "unknown (Redis down)"} for c in channels}, {}
    counts = {
        row["channel"]: row
        for row in Delivery.objects.filter(status=DeliveryStatus.QUEUED)
        .values("channel")
        .annotate(queued=Count("pk"), held=Count("pk", filter=Q(held_at__isnull=False)))
    }
    statuses = []
    now_ms = int(time.time() * 1000)
    for channel in channels:
        breaker = breakers[channel]
        until = breaker.get("until") if breaker.get("state") != "closed" else None
        rates = settings.CHANNEL_RATE_LIMITS.get(channel) or (None, None)
        statuses.append(
            ChannelStatus(
                channel=channel,
                breaker=breaker_display_state(breaker, now_ms),
                consecutive_failures=int(breaker.get("failures", 0)),
                open_until=datetime.fromtimestamp(int(until) / 1000, UTC) if until else None,
                queue_depth=depths.get(channel),
                queued=counts.get(channel, {}).get("queued", 0),
                held=counts.get(channel, {}).get("held", 0),
                rate_per_second=rates[0],
                rate_per_recipient_per_second=rates[1],
            )
        )
    return statuses
