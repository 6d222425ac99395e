"""Priority means order: after an outage, priority 1 goes out before the routine backlog.

2,000 routine messages fall due while Telegram's breaker is open and are held in the
database; then 10 priority-1 messages fall due and are held behind them. When the
provider is back, the first sends the provider accepts are the 10 urgent ones: the
dispatcher's release takes the most urgent first, and the queue's priority lists keep
that order in front of any routine task already waiting. Real worker and Beat processes,
a provider enforcing Telegram's limits, the shipped settings.
"""

import time

import pytest
from django.utils import timezone

from channels_app.breaker import breaker_record
from channels_app.shared_state import redis_client
from patients.models import Channel, Contact, Patient
from scheduling.models import Delivery
from scheduling.services import message_schedule
from tests.chaos.conftest import schedule_due_messages, status_counts

pytestmark = pytest.mark.chaos

ROUTINE, URGENT = 2000, 10


def wait_for_held(count: int, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Delivery.objects.filter(held_at__isnull=False).count() >= count:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.timeout(180)
def test_after_an_outage_the_urgent_messages_are_the_first_the_provider_gets(
    chaos_stack, fake_telegram, settings
):
    fake_telegram.configure(global_per_second=30, per_chat_per_second=1)
    for _ in range(settings.BREAKER_FAILURE_THRESHOLD):
        breaker_record("telegram", success=False)  # open for the shipped 30 s
    # ... and kept open until the recovery below ends it: on a busy machine making 2,010
    # messages and starting the workers can take longer than 30 s (the open period's
    # end and the probe are tests/chaos/test_breaker_liveness.py's subject, not this one's).
    redis = redis_client()
    seconds, micros = redis.time()
    redis.hset("breaker:telegram", "until", (seconds + 3600) * 1000 + micros // 1000)
    schedule_due_messages(ROUTINE, due_in=0)
    stack = chaos_stack()
    stack.start_worker("a", concurrency=2)
    stack.start_worker("b", concurrency=2)
    stack.wait_ready("a", "b")
    stack.start_beat()
    assert wait_for_held(ROUTINE), f"{status_counts()}\n{stack.logs_tail()}"

    organization = Patient.objects.first().organization
    for n in range(URGENT):
        patient = Patient.objects.create(
            organization=organization,
            name=f"Urgent {n}",
            timezone="UTC",
            preferred_channel=Channel.TELEGRAM,
        )
        Contact.objects.create(
            patient=patient,
            channel=Channel.TELEGRAM,
            address=str(700_000_000 + n),
            verified_at=timezone.now(),
        )
        message_schedule(
            patient=patient,
            content=f"Urgent {n}",
            starts_at=timezone.now(),
            channel=Channel.TELEGRAM,
            priority=1,
        )
    assert wait_for_held(ROUTINE + URGENT), f"{status_counts()}\n{stack.logs_tail()}"
    assert not fake_telegram.sent(), "something was sent while the breaker was open"

    # The provider is back and the open period over (set so, not waited for).
    redis_client().hset("breaker:telegram", "until", 0)
    assert fake_telegram.wait_for(lambda: len(fake_telegram.sent()) >= 3 * URGENT, 60), (
        f"{status_counts()}\n{stack.logs_tail()}"
    )
    first = [call.params.get("text") for call in fake_telegram.sent()[:URGENT]]
    print(f"\nCHAOS priority_order: first {URGENT} accepted: {first}")
    assert sorted(first) == sorted(f"Urgent {n}" for n in range(URGENT)), first
    assert all(call.status == 200 for call in fake_telegram.calls()), "a 429 or an error"
