"""PostgreSQL goes away for a few seconds mid-run: every connection of the workers and
of Beat is closed under them, and new ones are refused, as in a database restart.

Workers and Beat reach the database through a TCP proxy the test can cut; the test
process itself talks to PostgreSQL directly, to watch. A task that meets the cut fails;
its delivery is still `queued` (claim rolled back) or `sending` (the send went out but
its outcome could not be written), and the reaper picks both up after the cut.
"""

import time

import pytest
from django.conf import settings as django_settings

from tests.chaos.conftest import (
    RECOVERY_ENV,
    assert_each_delivered_once,
    report,
    schedule_due_messages,
    status_counts,
    tally,
    wait_until_final,
)
from tests.fakes.tcp_proxy import TcpProxy

pytestmark = pytest.mark.chaos

DELIVERIES = 800
CUT_SECONDS = 4


@pytest.fixture
def pg_proxy():
    db = django_settings.DATABASES["default"]
    proxy = TcpProxy((db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def proxied_database_url(proxy: TcpProxy) -> str:
    db = django_settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@127.0.0.1:{proxy.port}/{db['NAME']}"


@pytest.mark.timeout(180)
def test_workers_and_beat_recover_by_themselves_from_a_few_seconds_without_postgres(
    pg_proxy, chaos_stack, fake_telegram
):
    # pg_proxy first: set up first, torn down last, after the processes stopped.
    fake_telegram.configure(delay=(0.05, 0.15))
    schedule_due_messages(DELIVERIES, due_in=0)
    stack = chaos_stack(
        DATABASE_URL=proxied_database_url(pg_proxy),
        # Report an unreachable database quickly rather than hang a task on it.
        DATABASE_CONNECT_TIMEOUT=2,
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
    severed = pg_proxy.cut()
    time.sleep(CUT_SECONDS)
    pg_proxy.restore()

    done = wait_until_final(DELIVERIES, timeout=120)
    seconds = time.monotonic() - started
    result = tally(fake_telegram, DELIVERIES)
    report(
        "postgres_cut",
        result,
        seconds,
        connections_severed=severed,
        connections_refused=pg_proxy.refused,
        **stack.reaped(),
    )

    assert done, f"{status_counts()}\n{stack.logs_tail()}"
    assert severed > 0, "no connection was open when the database went away"
    assert_each_delivered_once(result)
    assert stack.processes["a"].poll() is None, "the worker did not survive the cut"
    assert stack.processes["beat"].poll() is None, "Beat did not survive the cut"
