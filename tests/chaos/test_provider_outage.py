"""The provider is down (503 to every call) for a while, then comes back.

The per-channel circuit breaker should open after BREAKER_FAILURE_THRESHOLD consecutive
failures and then let through only one probe per BREAKER_OPEN_SECONDS; waiting for it is
not an attempt, so nothing fails while it is open. Backpressure keeps the channel's
Redis queue near DISPATCH_MAX_QUEUED_PER_CHANNEL: the backlog waits in the database.
Asserted on behaviour only (the fake's calls, the database, the queue length), not on
how the breaker keeps its state.
"""

import math
import time

import pytest
import redis
from django.conf import settings as django_settings

from scheduling.models import Delivery, DeliveryStatus
from tests.chaos.conftest import (
    RECOVERY_ENV,
    TELEGRAM_QUEUE,
    assert_each_delivered_once,
    report,
    schedule_due_messages,
    status_counts,
    tally,
    wait_until_final,
)
from tests.conftest import Broker

pytestmark = pytest.mark.chaos

DELIVERIES = 600
CONCURRENCY = 4
FAILURE_THRESHOLD = 5
OPEN_SECONDS = 3
MAX_QUEUED = 200
OUTAGE_SECONDS = 15
# Tasks already past the queue-room check when it was taken (a dispatcher batch, a
# reaper pass, retries re-published by the workers) may overshoot the cap a little.
QUEUE_MARGIN = 50


@pytest.mark.timeout(150)
def test_while_the_provider_is_down_the_breaker_stops_calls_fails_nothing_and_bounds_the_queue(
    chaos_stack, fake_telegram
):
    fake_telegram.outage(503)
    schedule_due_messages(DELIVERIES, due_in=0)
    stack = chaos_stack(
        BREAKER_FAILURE_THRESHOLD=FAILURE_THRESHOLD,
        BREAKER_OPEN_SECONDS=OPEN_SECONDS,
        DISPATCH_MAX_QUEUED_PER_CHANNEL=MAX_QUEUED,
        # The limiter has its own scenario; here it would only stretch the run.
        DELIVERY_RATE_LIMIT_ENABLED="false",
        DELIVERY_RETRY_BASE_SECONDS=0.5,
        DELIVERY_RETRY_MAX_SECONDS=5,
        **RECOVERY_ENV,
    )
    stack.start_worker("a", concurrency=CONCURRENCY)
    stack.wait_ready("a")
    stack.start_beat()
    started = time.monotonic()

    assert fake_telegram.wait_for(lambda: fake_telegram.calls(), 30), stack.logs_tail()
    outage_began = time.monotonic()
    broker = redis.Redis.from_url(django_settings.REDIS_URL)
    longest_queue = failed_during_outage = 0
    while time.monotonic() - outage_began < OUTAGE_SECONDS:
        waiting = sum(broker.llen(name) for name in Broker.priority_lists(TELEGRAM_QUEUE))
        longest_queue = max(longest_queue, waiting)
        failed_during_outage = max(
            failed_during_outage, Delivery.objects.filter(status=DeliveryStatus.FAILED).count()
        )
        time.sleep(0.2)
    calls_during_outage = len(fake_telegram.calls())
    fake_telegram.outage(None)
    recovered = time.monotonic()

    done = wait_until_final(DELIVERIES, timeout=90)
    seconds = time.monotonic() - started
    result = tally(fake_telegram, DELIVERIES)
    # What a breaker allows: the failures that open it, the sends already on their way
    # when it opened (a batch per pool process: with the limiter off, a batch's sends go
    # at once), and one probe per open period.
    on_their_way = CONCURRENCY * django_settings.DELIVERY_BATCH_SIZE
    probes = math.ceil(OUTAGE_SECONDS / OPEN_SECONDS) + 1
    allowed_calls = FAILURE_THRESHOLD + on_their_way + probes
    report(
        "provider_outage_breaker",
        result,
        seconds,
        calls_during_outage=calls_during_outage,
        allowed_calls=allowed_calls,
        longest_queue=longest_queue,
        queue_cap=MAX_QUEUED,
        failed_during_outage=failed_during_outage,
        recovery_seconds=round(time.monotonic() - recovered, 1),
        **stack.reaped(),
    )

    assert calls_during_outage <= allowed_calls, (
        f"{calls_during_outage} calls to a provider that was down: the breaker did not hold"
    )
    assert failed_during_outage == 0, "deliveries failed while the breaker was open"
    assert longest_queue <= MAX_QUEUED + QUEUE_MARGIN, f"queue reached {longest_queue}"
    assert done, f"delivery did not resume: {status_counts()}\n{stack.logs_tail()}"
    assert_each_delivered_once(result)
