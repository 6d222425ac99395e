"""Redis, the broker, dies mid-run and comes back empty (no persistence).

Every task waiting in the queue is lost with it, and so are the rate-limit buckets and
the breaker's state. The database still says which deliveries are queued; the reaper
finds those whose task never started and publishes them again.
"""

import time

import pytest
import redis

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

DELIVERIES = 800
REDIS_DOWN_SECONDS = 3


@pytest.mark.timeout(180)
def test_a_redis_restart_that_loses_every_queued_task_is_healed_by_the_reaper(
    redis_for_everyone, chaos_stack, fake_telegram
):
    # redis_for_everyone first: set up first, torn down last, after the processes stopped.
    server = redis_for_everyone
    fake_telegram.configure(delay=(0.05, 0.15))
    schedule_due_messages(DELIVERIES, due_in=0)
    stack = chaos_stack(
        REDIS_URL=server.url,
        # The limiter has its own scenario; here it would only stretch the run.
        DELIVERY_RATE_LIMIT_ENABLED="false",
        **RECOVERY_ENV,
    )
    stack.start_worker("a", concurrency=4)
    stack.wait_ready("a")
    stack.start_beat()
    started = time.monotonic()

    assert fake_telegram.wait_for(lambda: len(fake_telegram.sent()) >= 200, 60), (
        f"no progress: {status_counts()}\n{stack.logs_tail()}"
    )
    client = redis.Redis.from_url(server.url)
    waiting = sum(client.llen(name) for name in Broker.priority_lists(TELEGRAM_QUEUE))
    tasks_lost = waiting + client.hlen("unacked")
    sent_before = len(fake_telegram.sent())
    # A sentinel written just before the kill: if it survives, Redis kept its data. (The
    # database is not checked for emptiness: workers and Beat write again at once.)
    client.set("chaos:sentinel", "1")
    server.kill9()
    time.sleep(REDIS_DOWN_SECONDS)
    server.start()
    assert client.get("chaos:sentinel") is None, "Redis came back with data: it must be empty"

    done = wait_until_final(DELIVERIES, timeout=120)
    seconds = time.monotonic() - started
    result = tally(fake_telegram, DELIVERIES)
    report(
        "redis_restart",
        result,
        seconds,
        tasks_lost_with_redis=tasks_lost,
        sent_before_restart=sent_before,
        **stack.reaped(),
    )

    assert done, f"{status_counts()}\n{stack.logs_tail()}"
    assert tasks_lost > 0, "Redis went down with nothing queued: the test proved less"
    assert_each_delivered_once(result)
    assert stack.processes["a"].poll() is None, "the worker did not survive the restart"
    assert stack.processes["beat"].poll() is None, "Beat did not survive the restart"
