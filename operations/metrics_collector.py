"""The shared state, read when Prometheus scrapes: queue depths, the held backlog, the
breakers and the dispatcher's last tick. Every process (the web's /metrics, each worker's
and Beat's exporter) reports the same truth, read from Redis and PostgreSQL at that moment,
so nothing goes stale when the process that last changed it is gone.

What a scrape costs, whatever the size of the tables: one LLEN per priority list of each
queue, one HGETALL per channel's breaker and one GET in Redis; one count over the partial
index of held deliveries (delivery_held_priority_idx, held rows only) in PostgreSQL, under
a statement timeout. A source that does not answer is reported as down
(companion_metrics_source_up) and its metrics are left out, never reported as zero.
"""

import logging
import time

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily
from redis.exceptions import RedisError

from channels_app.breaker import breaker_display_state, breaker_states
from scheduling.heartbeat import seconds_since_last_tick
from scheduling.models import Delivery, DeliveryStatus
from scheduling.queueing import queue_length

logger = logging.getLogger(__name__)

BREAKER_STATES = ("closed", "open", "probing")
# The backlog count's limit: a scrape that cannot count in this time reports the database
# as down rather than hold Prometheus (and the database) up.
DATABASE_TIMEOUT_MS = 2000


class SharedStateCollector:
    """A prometheus_client collector (registered per scrape by metrics_exposition)."""

    def collect(self):
        redis_up = database_up = 1
        try:
            yield from self._redis_families()
        except RedisError as exc:
            logger.warning("metrics: Redis unreachable (%s)", type(exc).__name__)
            redis_up = 0
        try:
            yield _held_family()
        except DatabaseError as exc:
            logger.warning("metrics: database unavailable (%s)", type(exc).__name__)
            database_up = 0
        up = GaugeMetricFamily(
            "companion_metrics_source_up",
            "1 when the shared state could be read from the source at this scrape, else 0.",
            labels=["source"],
        )
        up.add_metric(["redis"], redis_up)
        up.add_metric(["database"], database_up)
        yield up

    def _redis_families(self):
        # Read everything first: a Redis failure half-way yields no partial family.
        queues = queue_names()
        depths = {queue: queue_length(queue) for queue in queues}
        channels = list(settings.DELIVERY_QUEUES)
        breakers = breaker_states(channels)
        tick_age = seconds_since_last_tick()

        depth = GaugeMetricFamily(
            "companion_queue_depth", "Tasks waiting in each broker queue.", labels=["queue"]
        )
        for queue in queues:
            depth.add_metric([queue], depths[queue])
        state = GaugeMetricFamily(
            "companion_breaker_state",
            "Each channel's circuit breaker: 1 for its state (closed, open, probing), else 0.",
            labels=["channel", "state"],
        )
        failures = GaugeMetricFamily(
            "companion_breaker_consecutive_failures",
            "Consecutive failures a closed breaker has counted towards opening.",
            labels=["channel"],
        )
        now_ms = int(time.time() * 1000)
        for channel in channels:
            shown = breaker_display_state(breakers[channel], now_ms)
            for name in BREAKER_STATES:
                state.add_metric([channel, name], 1 if shown == name else 0)
            failures.add_metric([channel], int(breakers[channel].get("failures", 0)))
        yield from (depth, state, failures)
        if tick_age is not None:
            yield GaugeMetricFamily(
                "companion_dispatcher_last_tick_age_seconds",
                "Seconds since the dispatcher's last tick (Beat runs it every "
                "SCHEDULER_TICK_SECONDS); absent when none was ever recorded.",
                value=tick_age,
            )


def queue_names() -> list[str]:
    return [queue.name for queue in settings.CELERY_TASK_QUEUES]


def _held_family() -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "companion_deliveries_held",
        "Deliveries waiting in the database (backpressure, rate limit, breaker, backoff), "
        "by channel.",
        labels=["channel"],
    )
    counts = held_counts()
    for channel in settings.DELIVERY_QUEUES:
        family.add_metric([channel], counts.get(channel, 0))
    return family


def held_counts() -> dict[str, int]:
    """Held deliveries per channel, from the partial index that holds only them."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL statement_timeout = {DATABASE_TIMEOUT_MS}")
        rows = (
            Delivery.objects.filter(status=DeliveryStatus.QUEUED, held_at__isnull=False)
            .values("channel")
            .annotate(count=Count("pk"))
            .order_by()
        )
        return {row["channel"]: row["count"] for row in rows}


class OutsideRequests:
    """The collector for an exporter's thread, which lives outside Django's request cycle:
    its database connection is dropped when broken or past CONN_MAX_AGE, as a request's is."""

    def __init__(self, collector) -> None:
        self.collector = collector

    def collect(self):
        close_old_connections()
        try:
            yield from self.collector.collect()
        finally:
            close_old_connections()
