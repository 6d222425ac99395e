"""A worker node scaled down in the middle of a burst, as Kubernetes does it: SIGTERM to
the node's main process (the container's first process), which stops taking tasks,
finishes the sends it holds and exits; the pod is killed only if that takes longer than
its terminationGracePeriodSeconds.

With the settings as shipped (rate limits on, a strict provider), nothing is lost and
nothing is sent twice, not even inside the crash window: a warm shutdown cuts no send
short. The sends a node holds last a batch at most (25 at the shared 29/s: about a
second, a few with the provider's answers), far inside the grace period; tasks it had
taken but not started go back to the queue when it closes its broker connection (acks
late), and the other node sends them.
"""

import re
import subprocess
import time
from collections import Counter

import pytest

from tests.chaos.conftest import (
    assert_each_delivered_once,
    report,
    schedule_due_messages,
    status_counts,
    tally,
    wait_until_final,
)
from tests.chaos.test_node_loss import tasks_in_hand, wait_until_busy

pytestmark = pytest.mark.chaos

DELIVERIES = 600
TERM_AFTER_SENDS = 150
# deploy/ Kubernetes manifests: the worker pods' terminationGracePeriodSeconds.
GRACE_SECONDS = 60
SUCCEEDED = re.compile(r"Task scheduling\.deliver_message\[([\w-]+)\] succeeded")


@pytest.mark.timeout(360)
def test_sigterm_to_a_worker_node_mid_burst_loses_nothing_sends_nothing_twice_and_exits_in_grace(
    chaos_stack, fake_telegram
):
    fake_telegram.configure(global_per_second=30, per_chat_per_second=1, delay=(0.05, 0.3))
    stack = chaos_stack()  # the shipped settings
    stack.start_worker("a", concurrency=3)
    stack.start_worker("b", concurrency=3)
    stack.wait_ready("a", "b")
    schedule_due_messages(DELIVERIES, due_in=3)
    stack.start_beat()

    assert fake_telegram.wait_for(lambda: len(fake_telegram.sent()) >= TERM_AFTER_SENDS, 60), (
        f"no progress: {status_counts()}\n{stack.logs_tail()}"
    )
    assert wait_until_busy(stack, "a"), stack.logs_tail()
    held = tasks_in_hand(stack.log("a"))
    node = stack.processes["a"]
    termed_at, termed_wall = time.monotonic(), time.time()
    node.terminate()  # the main process only, as the kubelet signals a container
    try:
        exit_code = node.wait(GRACE_SECONDS)
    except subprocess.TimeoutExpired:  # reported below; the fixture kills it
        exit_code = None
    exit_seconds = time.monotonic() - termed_at
    finished_in_shutdown = held & set(SUCCEEDED.findall(stack.log("a")))
    sent_at_term = len(fake_telegram.sent())

    done = wait_until_final(DELIVERIES, timeout=120)
    result = tally(fake_telegram, DELIVERIES)
    figures = report(
        "worker_node_sigterm",
        result,
        time.monotonic() - termed_at,
        exit_seconds=round(exit_seconds, 1),
        exit_code=exit_code,
        grace_seconds=GRACE_SECONDS,
        sent_before_sigterm=TERM_AFTER_SENDS,
        sent_when_node_exited=sent_at_term,
        tasks_held_at_sigterm=len(held),
        finished_in_shutdown=len(finished_in_shutdown),
        answered_429_after_sigterm_s=[
            round(call.at - termed_wall, 1) for call in fake_telegram.answered(429)
        ],
        limited=dict(Counter(call.limited for call in fake_telegram.calls() if call.limited)),
        **stack.reaped(),
    )

    assert exit_code == 0, f"the node did not exit within {GRACE_SECONDS} s\n{stack.logs_tail()}"
    assert done, f"{status_counts()}\n{stack.logs_tail()}"
    assert_each_delivered_once(result)
    # A warm shutdown interrupts nothing: not one send in the crash window either.
    assert result.duplicates == 0, result
    assert result.interrupted_attempts == 0, result
    # Scale-down adds no 429. (Runs on a machine loaded 9-10 on 2 cores had up to three in
    # the burst, the one timed 4.3 s before the signal: docs/reliability.md, item 16.)
    assert not [at for at in figures["answered_429_after_sigterm_s"] if at >= 0], figures
    assert finished_in_shutdown, "the node held no started send at SIGTERM: the test proved less"
    assert stack.processes["b"].poll() is None
