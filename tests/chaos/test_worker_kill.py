"""kill -9 of worker processes while they hold sends in flight.

The fake answers slowly (0.2-0.5 s), so at any moment most pool processes are inside a
send. A killed pool process is replaced by its worker; a killed worker is started again.
A delivery whose send was cut short stays `sending` until its lease runs out; the reaper
then queues it again, and the next claim records the open attempt as `interrupted`.
"""

import os
import signal
import time
from urllib.parse import urlparse

import pytest

from tests.chaos.conftest import (
    RECOVERY_ENV,
    assert_each_delivered_once,
    report,
    schedule_due_messages,
    status_counts,
    tally,
    wait_until_final,
)

pytestmark = pytest.mark.chaos

# 80 tasks of 25 for 12 pool processes: at the last kill (600 sends) both workers still
# have batches in flight. With 1,000, the last batches could all sit with one worker and
# the other have nothing to kill mid-send.
DELIVERIES = 2000
# (worker, what to kill, after how many sends the fake accepted)
KILLS = [("a", "worker", 150), ("b", "pool process", 300), ("b", "worker", 450),
         ("a", "pool process", 600)]  # fmt: skip


def wait_for_a_sending_process(stack, name: str, port: int, timeout: float = 10) -> list[int]:
    """Pool processes of `name` with a request open to the fake, as soon as there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sending = stack.sending_children(name, port)
        if sending:
            return sending
        time.sleep(0.02)
    return []


@pytest.mark.timeout(200)
def test_kill_9_of_workers_mid_send_loses_nothing_and_resends_only_in_the_crash_window(
    chaos_stack, fake_telegram
):
    fake_telegram.configure(delay=(0.2, 0.5))
    schedule_due_messages(DELIVERIES, due_in=0)
    # The limiter has its own scenario; here it would only stretch the run.
    stack = chaos_stack(DELIVERY_RATE_LIMIT_ENABLED="false", **RECOVERY_ENV)
    # 2 x 6 pool processes: slow answers make the work wait, not compute.
    stack.start_worker("a", concurrency=6)
    stack.start_worker("b", concurrency=6)
    stack.wait_ready("a", "b")
    stack.start_beat()
    started = time.monotonic()
    port = urlparse(fake_telegram.base_url).port

    killed_mid_send = 0
    for name, what, after_sends in KILLS:
        assert fake_telegram.wait_for(lambda n=after_sends: len(fake_telegram.sent()) >= n, 60), (
            f"no progress to {after_sends} sends: {status_counts()}\n{stack.logs_tail()}"
        )
        sending = wait_for_a_sending_process(stack, name, port)
        killed_mid_send += bool(sending)
        if what == "worker":
            stack.kill9(name)
            stack.restart(name)
            stack.wait_ready(name)
        else:
            # The worker's main process replaces the pool process and, as tasks are acked
            # late and rejected on worker loss, hands the task out again.
            victim = sending[0] if sending else stack.pool_children(name)[0]
            os.kill(victim, signal.SIGKILL)

    done = wait_until_final(DELIVERIES, timeout=100)
    seconds = time.monotonic() - started
    result = tally(fake_telegram, DELIVERIES)
    report(
        "worker_kill_9",
        result,
        seconds,
        kills=len(KILLS),
        killed_mid_send=killed_mid_send,
        **stack.reaped(),
    )

    assert done, f"{status_counts()}\n{stack.logs_tail()}"
    assert_each_delivered_once(result)
    assert killed_mid_send == len(KILLS), "a kill found no send in flight; the test proved less"
    assert result.interrupted_attempts > 0, "no send was cut short: the kills missed"
    assert stack.processes["a"].poll() is None and stack.processes["b"].poll() is None
