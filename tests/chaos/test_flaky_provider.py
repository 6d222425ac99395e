"""The provider answers 5xx to half of all calls, at random.

With 10 tries per delivery, a delivery fails only if all 10 land on the bad half:
1 in 1,024. So at least 99.5% must get through, the rest fail with a reason, and none
reaches a patient twice: a 5xx means the provider did not take the message.
1,000 deliveries: about one is expected to fail, and more than five (the 0.5% allowed)
fail about once in 1,900 runs; with 600 more than three would fail once in 300.
"""

import time

import pytest

from scheduling.models import AttemptOutcome, Delivery, DeliveryStatus
from tests.chaos.conftest import (
    assert_each_delivered_once,
    report,
    schedule_due_messages,
    status_counts,
    tally,
    wait_until_final,
)

pytestmark = pytest.mark.chaos

DELIVERIES = 1000
MAX_ATTEMPTS = 10


@pytest.mark.timeout(180)
def test_a_provider_failing_half_the_calls_still_gets_995_in_1000_through_once_each(
    chaos_stack, fake_telegram
):
    fake_telegram.configure(failure_rate=0.5, failure_status=502)
    schedule_due_messages(DELIVERIES, due_in=0)
    stack = chaos_stack(
        DELIVERY_MAX_ATTEMPTS=MAX_ATTEMPTS,
        DELIVERY_RETRY_BASE_SECONDS=0.2,
        DELIVERY_RETRY_MAX_SECONDS=2,
        # A coin-flip provider gives 5 failures in a row about every 60 calls, which would
        # keep a 5-failure breaker opening all run long. This scenario is about the retry
        # budget; the breaker has its own (test_provider_outage.py).
        BREAKER_FAILURE_THRESHOLD=1000,
        # The limiter has its own scenario; here it would only stretch the run.
        DELIVERY_RATE_LIMIT_ENABLED="false",
    )
    stack.start_worker("a", concurrency=4)
    stack.wait_ready("a")
    stack.start_beat()
    started = time.monotonic()

    done = wait_until_final(DELIVERIES, timeout=140)
    seconds = time.monotonic() - started
    result = tally(fake_telegram, DELIVERIES)
    report("provider_5xx_half_the_time", result, seconds, **stack.reaped())

    assert done, f"{status_counts()}\n{stack.logs_tail()}"
    assert result.delivered >= 0.995 * DELIVERIES, result
    assert_each_delivered_once(result, allow_failed=DELIVERIES - result.delivered)
    failed = Delivery.objects.filter(status=DeliveryStatus.FAILED)
    for delivery in failed:
        assert delivery.error_code and delivery.error_text, "failed without a reason"
        outcomes = list(delivery.attempt_log.values_list("outcome", flat=True))
        assert outcomes == [AttemptOutcome.TRANSIENT] * MAX_ATTEMPTS, "failed before its budget"
    assert result.answered_5xx > 0.3 * result.provider_calls, "the fake did not fail enough"
