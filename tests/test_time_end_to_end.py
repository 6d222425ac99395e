"""Recurring messages with real Beat and worker processes: in a row, and after an outage."""

import time
from datetime import timedelta

import pytest

from scheduling.models import Delivery, DeliveryStatus, MessageStatus
from scheduling.services import message_cancel, message_schedule
from tests.conftest import from_now

pytestmark = pytest.mark.e2e


def wait_until(condition, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_a_short_rule_produces_deliveries_in_a_row_each_once(celery_stack, fake_telegram, patient):
    start = from_now(2)
    message = message_schedule(patient=patient, content="Drink water", starts_at=start,
                               recurrence="FREQ=SECONDLY;INTERVAL=3;COUNT=4")  # fmt: skip
    sent = message.deliveries.filter(status=DeliveryStatus.SENT)

    assert wait_until(lambda: sent.count() == 4, timeout=45), celery_stack.log("worker")[-3000:]

    occurrences = list(sent.order_by("occurrence_at").values_list("occurrence_at", flat=True))
    assert occurrences == [start + timedelta(seconds=3 * n) for n in range(4)]
    assert len(fake_telegram.sent()) == 4
    message.refresh_from_db()
    assert message.status == MessageStatus.COMPLETED
    assert message.deliveries.count() == 4


def test_after_beat_was_down_one_catch_up_is_sent_and_missed_ones_are_expired(
    celery_stack, fake_telegram, patient
):
    message = message_schedule(patient=patient, content="Check-in", starts_at=from_now(2),
                               recurrence="FREQ=SECONDLY;INTERVAL=2")  # fmt: skip
    deliveries = Delivery.objects.filter(message=message)
    assert wait_until(lambda: deliveries.filter(status=DeliveryStatus.SENT).exists())

    celery_stack.kill("beat")
    time.sleep(1.5)  # a dispatch already on the queue may still run
    sent_before = set(deliveries.filter(status=DeliveryStatus.SENT).values_list("pk", flat=True))
    time.sleep(8)  # four occurrences go by with no dispatcher
    assert set(deliveries.values_list("pk", flat=True)) == sent_before
    celery_stack.start("beat", celery_stack.beat_args)

    expired = deliveries.filter(status=DeliveryStatus.EXPIRED, error_code="superseded")
    assert wait_until(lambda: expired.count() >= 3), list(deliveries.values("status"))
    assert wait_until(lambda: deliveries.filter(status=DeliveryStatus.SENT).count()
                      > len(sent_before))  # fmt: skip
    message_cancel(message, reason="test over")

    # The first dispatch after the restart sent one delivery, not one per missed
    # occurrence: no two sends of this message came closer than the rule's 2 seconds
    # less scheduling noise.
    sent_times = sorted(deliveries.filter(status=DeliveryStatus.SENT).values_list(
        "sent_at", flat=True))  # fmt: skip
    gaps = [(b - a).total_seconds() for a, b in zip(sent_times, sent_times[1:], strict=False)]
    assert min(gaps) > 1.0, gaps
    occurrences = list(deliveries.values_list("occurrence_at", flat=True))
    assert len(occurrences) == len(set(occurrences))
    assert all(e.occurrence_at.timestamp() % 2 == message.starts_at.timestamp() % 2
               for e in expired)  # fmt: skip
    assert len(fake_telegram.sent()) == deliveries.filter(status=DeliveryStatus.SENT).count()
