"""A deliver_message task carries a batch: one claim, overlapping sends, one record."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from channels_app.ratelimit import SendSlot, reserve_slots
from scheduling.delivery import deliver_batch
from scheduling.dispatch import dispatch_due
from scheduling.models import AttemptOutcome, Delivery, DeliveryStatus
from scheduling.queueing import release_held_deliveries
from scheduling.services import message_schedule
from scheduling.tasks import deliver_message
from tests.conftest import ago
from tests.fakes.telegram_server import Reply


def due_deliveries(make_patient, count: int) -> list[Delivery]:
    for _ in range(count):
        message_schedule(patient=make_patient(), content="Take your dose", starts_at=ago(1))
    dispatch_due()
    return list(Delivery.objects.select_related("contact").order_by("pk"))


def test_a_batch_is_sent_concurrently_and_each_delivery_recorded(fake_telegram, make_patient):
    deliveries = due_deliveries(make_patient, 8)
    fake_telegram.configure(delay=1.0)

    outcomes = deliver_batch([d.pk for d in deliveries])

    assert sorted(o.delivery_id for o in outcomes) == [d.pk for d in deliveries]
    assert {o.status for o in outcomes} == {DeliveryStatus.SENT}
    # Eight sends were waiting for their answers at once, not one after the other.
    assert fake_telegram.most_in_flight == 8
    for delivery in deliveries:
        delivery.refresh_from_db()
        attempt = delivery.attempt_log.get()
        assert delivery.status == DeliveryStatus.SENT and delivery.provider_message_id
        assert delivery.lease_until is None and delivery.attempts == 1 and delivery.sent_at
        assert attempt.outcome == AttemptOutcome.SENT and attempt.duration_ms >= 900
    sent_to = sorted(c.params["chat_id"] for c in fake_telegram.sent())
    assert sent_to == sorted(d.contact.address for d in deliveries)


def test_each_delivery_of_a_batch_gets_its_own_outcome(fake_telegram, make_patient):
    ok, blocked, flaky, gone = due_deliveries(make_patient, 4)
    fake_telegram.push(Reply.blocked(), chat_id=blocked.contact.address)
    fake_telegram.push(Reply.server_error(502), chat_id=flaky.contact.address)
    missing_id = gone.pk
    gone.delete()

    outcomes = {o.delivery_id: o for o in deliver_batch([ok.pk, blocked.pk, flaky.pk, missing_id])}

    assert outcomes[ok.pk].status == DeliveryStatus.SENT
    assert outcomes[blocked.pk].status == DeliveryStatus.FAILED
    assert outcomes[flaky.pk].status == DeliveryStatus.QUEUED
    assert outcomes[flaky.pk].retry_in is not None
    assert outcomes[missing_id].status == "missing"
    blocked.refresh_from_db()
    flaky.refresh_from_db()
    assert blocked.error_code == "recipient_blocked"
    assert flaky.error_code == "network" and flaky.attempt_log.get().outcome == "transient"


def test_the_same_id_twice_in_a_batch_is_sent_once(fake_telegram, make_patient):
    [delivery] = due_deliveries(make_patient, 1)

    outcomes = deliver_batch([delivery.pk, delivery.pk])

    assert [o.status for o in outcomes] == [DeliveryStatus.SENT]
    assert len(fake_telegram.sent()) == 1


def test_slots_are_reserved_ahead_up_to_the_longest_wait(settings):
    settings.CHANNEL_RATE_LIMITS = {**settings.CHANNEL_RATE_LIMITS, "telegram": (10.0, 1.0)}

    slots = reserve_slots("telegram", ["a", "b", "c", "d", "e"], max_wait=0.25)

    assert [s.reserved for s in slots] == [True, True, True, False, False]
    assert [round(s.wait, 1) for s in slots[:3]] == [0.0, 0.1, 0.2]
    # A refused recipient took nothing: the next free slot is still the fourth one.
    [later] = reserve_slots("telegram", ["d"], max_wait=1.0)
    assert later.reserved and 0.2 < later.wait <= 0.3


def test_a_chat_named_twice_gets_its_second_slot_a_second_later(settings):
    settings.CHANNEL_RATE_LIMITS = {**settings.CHANNEL_RATE_LIMITS, "telegram": (30.0, 1.0)}

    first, again, other = reserve_slots("telegram", ["a", "a", "b"], max_wait=0.5)

    assert first.reserved and not again.reserved and other.reserved
    assert 0.9 < again.wait <= 1.0
    assert other.wait < 0.1  # the other chat is not held up by the refused one


def test_a_send_that_wakes_up_late_for_its_slot_takes_a_new_one(settings):
    settings.CHANNEL_RATE_LIMITS = {**settings.CHANNEL_RATE_LIMITS, "telegram": (10.0, 1.0)}
    reserve_slots("telegram", ["a", "b"], max_wait=1.0)  # slots now and in 0.1 s

    late = SendSlot(time.monotonic() - 0.5, "telegram", "c")  # woke up 0.5 s late
    pause = late.delay()

    # Going now would bunch it with the punctual sends: it queues behind them instead.
    assert pause is not None and 0.1 < pause <= 0.2
    # A quarter of an interval (25 ms at 10/s) late is still on time.
    assert SendSlot(time.monotonic() - 0.01, "telegram", "d").delay() is None


def test_a_batch_sends_at_its_slots_even_when_its_first_connection_is_slow(
    settings, fake_telegram, make_patient
):
    settings.CHANNEL_RATE_LIMITS = {**settings.CHANNEL_RATE_LIMITS, "telegram": (20.0, 1.0)}
    fake_telegram.configure(global_per_second=20, per_chat_per_second=1)
    deliveries = due_deliveries(make_patient, 20)

    outcomes = deliver_batch([d.pk for d in deliveries])

    assert {o.status for o in outcomes} == {DeliveryStatus.SENT}
    assert [c.status for c in fake_telegram.calls()] == [200] * 20


def test_deliveries_without_a_slot_wait_in_the_database_without_an_attempt(
    settings, fake_telegram, make_patient, broker, django_capture_on_commit_callbacks
):
    settings.CHANNEL_RATE_LIMITS = {**settings.CHANNEL_RATE_LIMITS, "telegram": (2.0, 1.0)}
    settings.DELIVERY_RATE_INLINE_WAIT_SECONDS = 0.6
    deliveries = due_deliveries(make_patient, 5)
    broker.drain("deliver.telegram")

    before = timezone.now()
    result = deliver_message([d.pk for d in deliveries])

    # 2/s with 0.6 s reserved ahead: two go now, three wait for one later task.
    assert result == {DeliveryStatus.SENT: 2, DeliveryStatus.QUEUED: 3}
    waiting = Delivery.objects.filter(status=DeliveryStatus.QUEUED)
    assert waiting.count() == 3
    # They come back when their slot is within the inline wait: the next slot is a second
    # after the first of the two, and 0.6 s of it may be waited for in a task.
    assert all(d.attempts == 0 for d in waiting)
    assert all(before + timedelta(seconds=0.3) <= d.next_attempt_at
               <= before + timedelta(seconds=0.6) for d in waiting)  # fmt: skip
    # Held in the database, not in a task a worker keeps in memory; the tick publishes
    # them when their moment comes.
    assert all(d.held_at for d in waiting) and broker.queue_length("deliver.telegram") == 0
    time.sleep(max(0.0, (max(d.next_attempt_at for d in waiting) - timezone.now()).total_seconds()))
    with django_capture_on_commit_callbacks(execute=True):
        assert release_held_deliveries() == 3
    assert sorted(broker.queued_deliveries("deliver.telegram")) == sorted(d.pk for d in waiting)
    assert len(fake_telegram.sent()) == 2


@pytest.mark.parametrize("argument", ["12", [], [1, "2"], None, {"id": 1}, [True]])
def test_a_task_with_a_bad_argument_is_refused_without_crashing(argument):
    assert deliver_message(argument) == {"invalid": 1}


def test_a_task_from_an_older_release_with_one_id_still_delivers(fake_telegram, make_patient):
    [delivery] = due_deliveries(make_patient, 1)

    assert deliver_message(delivery.pk) == {DeliveryStatus.SENT: 1}


def test_at_a_broadcast_rate_a_send_a_few_ms_late_still_goes_in_its_slot(settings, broker):
    # At 1,000/s a quarter interval is 0.25 ms, less than a sleep overshoots: every send
    # missed its slot and took a new one, and missed that too.
    settings.CHANNEL_RATE_LIMITS = {**settings.CHANNEL_RATE_LIMITS, "telegram": (1000.0, 1.0)}
    reserve_slots("telegram", [f"chat{n}" for n in range(50)], max_wait=1.0)  # next 50 ms
    assert SendSlot(time.monotonic() - 0.003, "telegram", "d").delay() is None
    # Later than the 10 ms floor it is late: it queues behind the punctual sends.
    too_late = SendSlot(time.monotonic() - 0.050, "telegram", "e")
    assert too_late.delay() is not None


def test_a_send_that_missed_its_slot_does_not_wait_a_whole_chat_interval_for_its_own_slot(
    settings,
):
    # Its reservation moved its chat's bucket a second on (1/s per chat); the new slot
    # must not wait for that. A second each, at 1,000/s, held most sends of the
    # broadcast scenario (docs/benchmarks.md, scenario 9) back.
    settings.CHANNEL_RATE_LIMITS = {**settings.CHANNEL_RATE_LIMITS, "telegram": (100.0, 1.0)}
    [slot] = reserve_slots("telegram", ["chat"], max_wait=1.0)
    missed = SendSlot(time.monotonic() + slot.wait - 0.2, "telegram", "chat")  # 0.2 s late
    pause = missed.delay()
    assert pause is None or pause < 0.1


def test_a_replacement_slot_still_waits_for_a_later_send_to_the_same_chat(settings):
    settings.CHANNEL_RATE_LIMITS = {**settings.CHANNEL_RATE_LIMITS, "telegram": (100.0, 1.0)}
    began = time.monotonic()
    [first] = reserve_slots("telegram", ["chat"], max_wait=1.0)
    [second] = reserve_slots("telegram", ["chat"], max_wait=2.0)  # a second after it
    between = time.monotonic() - began  # a busy machine's pause counts against the waits
    assert second.reserved and 1.0 - between - 0.01 <= second.wait - first.wait <= 1.0
    missed = SendSlot(time.monotonic() + first.wait - 0.2, "telegram", "chat")
    pause = missed.delay()
    # Not before a chat interval after the later send's slot: 2 s after the first.
    assert pause is not None and pause > 1.99 - (time.monotonic() - began)


def test_a_claims_first_slot_leaves_time_to_write_the_claim(settings):
    settings.CHANNEL_RATE_LIMITS = {**settings.CHANNEL_RATE_LIMITS, "telegram": (1000.0, 1.0)}
    [slot] = reserve_slots("telegram", ["chat"], max_wait=1.0, lead=0.05)
    assert slot.reserved and 0.045 < slot.wait <= 0.05
