"""The shared rate limiter, the circuit breaker and backpressure, on the real Redis."""

import hashlib
import threading
import time

import pytest
from django.conf import settings as django_settings
from django.forms.models import model_to_dict
from django.utils import timezone

from channels_app.breaker import (
    HALF_OPEN_RECHECK_SECONDS,
    breaker_allow,
    breaker_record,
    breaker_states,
)
from channels_app.ratelimit import _RESERVE, SendSlot, reserve_slots, take_token
from channels_app.shared_state import redis_client
from scheduling.delivery import deliver
from scheduling.dispatch import dispatch_due
from scheduling.models import AttemptOutcome, Delivery, DeliveryStatus, ScheduledMessage
from scheduling.queueing import enqueue_deliveries, queue_capacity, queue_room
from scheduling.services import message_schedule
from tests.conftest import ago
from tests.fakes.telegram_server import Reply


def breaker_state(channel: str) -> str:
    return breaker_states([channel])[channel]["state"]


def wait_out_the_open_period(opened: float) -> None:
    """Until just past the breaker's open period that began at `opened`."""
    time.sleep(max(0.0, opened + django_settings.BREAKER_OPEN_SECONDS + 0.05 - time.monotonic()))


def test_a_recipient_gets_one_token_per_second_and_the_wait_is_told(settings):
    settings.CHANNEL_RATE_LIMITS = {"telegram": (1000, 1)}
    began = time.monotonic()
    assert take_token("telegram", "chat-1") == 0.0
    wait = take_token("telegram", "chat-1")
    assert 1.0 - (time.monotonic() - began) - 0.01 <= wait <= 1.0
    time.sleep(0.01)  # past the global spacing (1 ms)
    assert take_token("telegram", "chat-2") == 0.0  # another chat is not held up


def test_the_limiter_runs_by_its_script_hash_and_survives_a_redis_that_forgot_it(settings):
    settings.CHANNEL_RATE_LIMITS = {"telegram": (1000, 1)}
    client = redis_client()
    began = time.monotonic()
    assert take_token("telegram", "chat-forgot") == 0.0
    [loaded] = client.script_exists(hashlib.sha1(_RESERVE.encode()).hexdigest())  # noqa: S324
    assert loaded
    client.script_flush()  # as after a restart of Redis
    wait = take_token("telegram", "chat-forgot")
    assert 1.0 - (time.monotonic() - began) - 0.01 <= wait <= 1.0  # the bucket still holds


@pytest.mark.parametrize("rate", [0.1, 1.0, 29.0, 80.0, 1000.0])
def test_slots_are_spaced_at_the_channels_rate_from_a_tenth_to_a_thousand_a_second(settings, rate):
    # The range a clinic configures: an SMS sender's 0.1/s to Telegram's paid 1,000/s.
    # A batch's slots follow each other at exactly 1/rate, by Redis's clock; the next
    # batch goes on where the last one ended, and a slot beyond the wait asked for is
    # told, not taken. A number may have one send in a thousand of the channel's: its
    # own next slot is then far off, however slow the machine between two calls.
    settings.CHANNEL_RATE_LIMITS = {"sms": (rate, rate / 1000)}
    interval = 1 / rate
    numbers = ["+4915100000001", "+4915100000002", "+4915100000003"]
    began = time.monotonic()
    first = reserve_slots("sms", numbers, max_wait=3 * interval)
    assert [slot.reserved for slot in first] == [True, True, True]
    gaps = [first[1].wait - first[0].wait, first[2].wait - first[1].wait]
    assert gaps == [pytest.approx(interval, abs=1e-6)] * 2
    [then] = reserve_slots("sms", ["+4915100000004"], max_wait=3 * interval)
    # Redis's clock moved on by the time between the two calls.
    between = time.monotonic() - began
    assert then.reserved
    assert first[2].wait + interval - between - 0.01 <= then.wait <= first[2].wait + interval
    [refused] = reserve_slots("sms", numbers[:1], max_wait=interval)
    assert not refused.reserved and refused.wait > 100 * interval
    # A send at its slot goes; one later than the tolerance (a quarter interval, 20 ms
    # at the least) takes a new slot instead of bunching with the punctual sends.
    on_time = SendSlot(time.monotonic(), "sms", "+4915100000006")
    assert on_time.delay() is None
    missed = time.monotonic() - max(interval / 4, SendSlot.LATE_FLOOR) - 0.05
    late = SendSlot(missed, "sms", "+4915100000007")
    late.delay()
    assert late.moment > missed + 0.05  # a new slot, from now on


def test_a_refused_token_uses_up_no_global_slot(settings):
    settings.CHANNEL_RATE_LIMITS = {"telegram": (1, 1)}  # one a second in all
    assert take_token("telegram", "a") == 0.0
    time.sleep(1.05)
    # "a" is ready again, the global bucket too: both are taken at once.
    assert take_token("telegram", "a") == 0.0
    # "a" is refused by its chat limit; the global bucket is refused too, and neither
    # refusal moves the other: after the global wait, "b" goes.
    wait = take_token("telegram", "b")
    assert 0 < wait <= 1.0
    time.sleep(wait + 0.01)
    assert take_token("telegram", "b") == 0.0


def test_many_threads_together_never_exceed_the_global_rate(settings):
    settings.CHANNEL_RATE_LIMITS = {"telegram": (20, 1)}
    granted: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + 2.0

    def hammer(worker: int) -> None:
        n = 0
        while time.monotonic() < stop:
            n += 1
            if take_token("telegram", f"{worker}-{n}") == 0.0:
                with lock:
                    granted.append(time.monotonic())

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    granted.sort()
    # In any one-second window: at most rate + 1 (both closed ends), as documented.
    worst = max(sum(1 for t in granted if start <= t < start + 1.0) for start in granted)
    assert worst <= 21, worst
    assert len(granted) >= 30  # and the limiter did let traffic through


def test_the_breaker_opens_after_the_threshold_lets_one_probe_and_closes(settings):
    settings.BREAKER_FAILURE_THRESHOLD = 3
    settings.BREAKER_OPEN_SECONDS = 0.5
    for _ in range(2):
        breaker_record("telegram", success=False)
    assert breaker_allow("telegram").allowed
    breaker_record("telegram", success=False)

    refused = breaker_allow("telegram")
    assert not refused.allowed and 0 < refused.wait <= 0.5
    assert breaker_state("telegram") == "open"
    time.sleep(0.55)
    probe = breaker_allow("telegram")
    assert probe.allowed and probe.probe
    assert not breaker_allow("telegram").allowed  # one probe at a time
    breaker_record("telegram", success=True)
    assert breaker_allow("telegram").allowed and breaker_state("telegram") == "closed"


def test_a_failed_probe_opens_the_breaker_again(settings):
    settings.BREAKER_FAILURE_THRESHOLD = 1
    settings.BREAKER_OPEN_SECONDS = 0.3
    breaker_record("telegram", success=False)
    time.sleep(0.35)
    assert breaker_allow("telegram").probe
    breaker_record("telegram", success=False)
    assert not breaker_allow("telegram").allowed


def test_a_success_between_failures_resets_the_count(settings):
    settings.BREAKER_FAILURE_THRESHOLD = 2
    breaker_record("telegram", success=False)
    breaker_record("telegram", success=True)
    breaker_record("telegram", success=False)
    assert breaker_state("telegram") == "closed"


def due_deliveries(make_patient, count: int) -> list[Delivery]:
    for _ in range(count):
        message_schedule(patient=make_patient(), content="x", starts_at=ago(1))
    dispatch_due()
    return list(Delivery.objects.order_by("pk"))


def test_while_the_breaker_is_open_deliveries_wait_without_an_attempt(
    settings, fake_telegram, make_patient, broker
):
    settings.BREAKER_FAILURE_THRESHOLD = 2
    settings.DELIVERY_RETRY_BASE_SECONDS = 0.1
    first, second, third = due_deliveries(make_patient, 3)
    fake_telegram.push(Reply.server_error(503), Reply.server_error(503))

    assert deliver(first.pk).status == DeliveryStatus.QUEUED
    assert deliver(second.pk).status == DeliveryStatus.QUEUED
    waiting = deliver(third.pk)

    assert waiting.waiting_for == "breaker" and waiting.retry_in > 0
    third.refresh_from_db()
    assert third.status == DeliveryStatus.QUEUED and third.attempts == 0
    assert not third.attempt_log.exists()
    assert len(fake_telegram.calls()) == 2


def test_a_429_does_not_count_against_the_breaker(settings, fake_telegram, make_patient):
    settings.BREAKER_FAILURE_THRESHOLD = 1
    [delivery] = due_deliveries(make_patient, 1)
    fake_telegram.push(Reply.too_many_requests(1))
    deliver(delivery.pk)
    assert breaker_state("telegram") == "closed"
    assert delivery.attempt_log.get().outcome == AttemptOutcome.TRANSIENT


def test_a_rate_limit_wait_is_not_an_attempt_and_comes_back_after_the_wait(
    settings, fake_telegram, make_patient
):
    settings.DELIVERY_RATE_INLINE_WAIT_SECONDS = 0  # re-queue instead of sleeping
    # A chat's next send 10 s after its last, so that a slow moment of the machine between
    # the token and the delivery (0.55 s was seen) cannot use up the wait.
    settings.CHANNEL_RATE_LIMITS = {**settings.CHANNEL_RATE_LIMITS, "telegram": (29.0, 0.1)}
    [delivery] = due_deliveries(make_patient, 1)
    taken = time.monotonic()
    take_token("telegram", delivery.message.patient.contacts.get().address)

    outcome = deliver(delivery.pk)

    elapsed = time.monotonic() - taken
    assert outcome.waiting_for == "rate_limit"
    assert 10.0 - elapsed - 0.01 <= outcome.retry_in <= 10.0
    delivery.refresh_from_db()
    assert delivery.attempts == 0 and fake_telegram.calls() == []


def test_a_short_rate_limit_wait_is_slept_and_then_sent(settings, fake_telegram, make_patient):
    [delivery] = due_deliveries(make_patient, 1)
    take_token("telegram", delivery.message.patient.contacts.get().address)
    started = time.monotonic()
    assert deliver(delivery.pk).status == DeliveryStatus.SENT
    assert time.monotonic() - started >= 0.5
    assert len(fake_telegram.sent()) == 1


@pytest.mark.django_db(transaction=True)
def test_a_full_queue_holds_deliveries_in_the_database_until_there_is_room(
    settings, make_patient, broker
):
    settings.DISPATCH_MAX_QUEUED_PER_CHANNEL = 10
    settings.DELIVERY_BATCH_SIZE = 4
    deliveries = due_deliveries(make_patient, 25)

    # 10 deliveries fit, published as tasks of at most 4 each, in due order.
    batches = broker.queued_batches("deliver.telegram")
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(sum(batches, [])) == sorted(d.pk for d in deliveries)[:10]
    assert Delivery.objects.filter(held_at__isnull=False).count() == 15
    # Workers drain the queue; the next tick publishes the oldest held ones.
    broker.drain("deliver.telegram")
    dispatch_due()
    assert len(broker.queued_deliveries("deliver.telegram")) == 10
    assert Delivery.objects.filter(held_at__isnull=False).count() == 5
    # A waiting task counts as a full batch: one task of 2 leaves room for 10 - 4.
    broker.drain("deliver.telegram")
    Delivery.objects.filter(held_at__isnull=True).update(held_at=timezone.now())
    enqueue_deliveries([(deliveries[0].pk, "telegram", 3), (deliveries[1].pk, "telegram", 3)])
    assert broker.queued_batches("deliver.telegram") == [[deliveries[0].pk, deliveries[1].pk]]
    assert queue_room("telegram") == 10 - 4


@pytest.mark.django_db(transaction=True)
def test_nothing_is_published_to_a_channel_whose_breaker_is_open(settings, make_patient, broker):
    settings.BREAKER_FAILURE_THRESHOLD = 1
    breaker_record("telegram", success=False)
    due_deliveries(make_patient, 5)
    assert broker.queue_length("deliver.telegram") == 0
    assert Delivery.objects.filter(held_at__isnull=False).count() == 5
    breaker_record("telegram", success=True)
    dispatch_due()
    assert len(broker.queued_deliveries("deliver.telegram")) == 5


def test_while_a_probe_is_on_its_way_the_others_look_again_soon_not_after_its_lease(settings):
    settings.BREAKER_FAILURE_THRESHOLD = 1
    settings.BREAKER_OPEN_SECONDS = 0.2
    breaker_record("telegram", success=False)
    time.sleep(0.25)
    assert breaker_allow("telegram").probe
    waiting = breaker_allow("telegram")
    # The probe's lease is DELIVERY_LEASE_SECONDS (15 s): a lost worker, not a send.
    assert not waiting.allowed and waiting.wait == HALF_OPEN_RECHECK_SECONDS
    assert settings.DELIVERY_LEASE_SECONDS > HALF_OPEN_RECHECK_SECONDS


@pytest.mark.django_db(transaction=True)
def test_an_open_breaker_with_nothing_in_flight_publishes_one_probe_and_reopens_the_channel(
    settings, make_patient, broker, fake_telegram
):
    settings.BREAKER_FAILURE_THRESHOLD = 1
    # Long enough that making five patients and their messages (a third of a second on
    # a slow machine) ends well inside it; the test then waits out the rest.
    settings.BREAKER_OPEN_SECONDS = 2.0
    breaker_record("telegram", success=False)
    opened = time.monotonic()
    deliveries = due_deliveries(make_patient, 5)
    assert time.monotonic() - opened < 2.0, "the set-up outlasted the open period"
    assert broker.queue_length("deliver.telegram") == 0  # open: all held
    wait_out_the_open_period(opened)

    # The open period is over and no delivery is in flight: the dispatcher's tick
    # publishes the oldest held delivery as the probe, and only one, however many ticks.
    dispatch_due()
    dispatch_due()
    assert broker.queued_deliveries("deliver.telegram") == [deliveries[0].pk]
    assert Delivery.objects.filter(held_at__isnull=False).count() == 4
    assert breaker_state("telegram") == "open"

    assert deliver(deliveries[0].pk).status == DeliveryStatus.SENT
    assert breaker_state("telegram") == "closed"
    broker.drain("deliver.telegram")
    dispatch_due()
    assert sorted(broker.queued_deliveries("deliver.telegram")) == [d.pk for d in deliveries[1:]]
    assert not Delivery.objects.filter(held_at__isnull=False).exists()


@pytest.mark.django_db(transaction=True)
def test_a_failed_probe_from_the_dispatcher_shuts_the_channel_for_another_open_period(
    settings, make_patient, broker, fake_telegram
):
    settings.BREAKER_FAILURE_THRESHOLD = 1
    settings.BREAKER_OPEN_SECONDS = 2.0  # the set-up and each step end well inside it
    breaker_record("telegram", success=False)
    opened = time.monotonic()
    first, second = due_deliveries(make_patient, 2)
    wait_out_the_open_period(opened)
    dispatch_due()
    fake_telegram.push(Reply.server_error(503))
    before_the_probe = time.monotonic()
    assert deliver(first.pk).status == DeliveryStatus.QUEUED  # retried later, as ever
    reopened = time.monotonic()
    broker.drain("deliver.telegram")
    dispatch_due()
    assert broker.queue_length("deliver.telegram") == 0
    assert time.monotonic() - before_the_probe < 2.0, "the steps outlasted the open period"
    wait_out_the_open_period(reopened)
    dispatch_due()
    assert len(broker.queued_deliveries("deliver.telegram")) == 1


@pytest.mark.django_db(transaction=True)
def test_held_deliveries_past_their_window_expire_instead_of_becoming_the_probe(
    settings, make_patient, broker
):
    settings.BREAKER_FAILURE_THRESHOLD = 1
    settings.BREAKER_OPEN_SECONDS = 2.0  # the set-up ends well inside it
    breaker_record("telegram", success=False)
    opened = time.monotonic()
    stale, fresh = due_deliveries(make_patient, 2)
    Delivery.objects.filter(pk=stale.pk).update(expires_at=ago(1))
    assert time.monotonic() - opened < 2.0, "the set-up outlasted the open period"
    wait_out_the_open_period(opened)
    dispatch_due()
    stale.refresh_from_db()
    assert (stale.status, stale.error_code, stale.held_at) == (
        DeliveryStatus.EXPIRED,
        "window_passed",
        None,
    )
    assert broker.queued_deliveries("deliver.telegram") == [fresh.pk]


def test_two_dispatchers_at_once_publish_one_probe_between_them(settings, broker):
    settings.BREAKER_FAILURE_THRESHOLD = 1
    # A published probe is the only one for an open period: 2 s, which the eight
    # questions end well inside however busy the machine (at 0.2 s, a slow thread could
    # have asked after that period and rightly been given a second probe).
    settings.BREAKER_OPEN_SECONDS = 2.0
    breaker_record("telegram", success=False)
    time.sleep(2.05)
    rooms: list[int] = []
    together = threading.Barrier(8)

    def ask() -> None:
        together.wait()
        rooms.append(queue_room("telegram"))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(rooms) == [0] * 7 + [1]


def clone_messages(template, count: int, **changes) -> None:
    fields = model_to_dict(template, exclude=["id", "organization", "patient"])
    fields |= {"organization_id": template.organization_id, "patient_id": template.patient_id}
    ScheduledMessage.objects.bulk_create(
        ScheduledMessage(**(fields | changes)) for _ in range(count)
    )


@pytest.mark.django_db(transaction=True)
def test_after_an_outage_priority_1_goes_out_before_the_held_routine_backlog(
    settings, make_patient, broker, fake_telegram
):
    settings.BREAKER_FAILURE_THRESHOLD = 1
    breaker_record("telegram", success=False)
    # Open for ten minutes rather than the shipped 30 s: making 2,010 messages on a busy
    # machine can take longer than that, and the open period is ended below by hand.
    broker.client.hset("breaker:telegram", "until", int((time.time() + 600) * 1000))
    routine = message_schedule(patient=make_patient(), content="routine", starts_at=ago(1))
    clone_messages(routine, 1999)
    dispatch_due()
    urgent = message_schedule(
        patient=make_patient(), content="urgent", starts_at=ago(1), priority=1
    )
    clone_messages(urgent, 9, priority=1)
    dispatch_due()
    assert Delivery.objects.filter(held_at__isnull=False).count() == 2010
    urgent_ids = set(Delivery.objects.filter(priority=1).values_list("pk", flat=True))

    # The open period is over (set so, not waited for) and the provider is back: the
    # probe is the most urgent held delivery, then the rest are published most urgent
    # first, and the queue keeps that order.
    broker.client.hset("breaker:telegram", "until", 0)
    dispatch_due()
    [probe] = broker.queued_deliveries("deliver.telegram")
    assert probe in urgent_ids
    assert deliver(probe).status == DeliveryStatus.SENT
    broker.drain("deliver.telegram")
    dispatch_due()
    # This tick publishes the urgent ones only; the routine ones follow at the next,
    # as far as the queue has room (DISPATCH_QUEUE_SECONDS of sends).
    assert set(broker.queued_deliveries("deliver.telegram")) == urgent_ids - {probe}
    dispatch_due()
    published = broker.queued_deliveries("deliver.telegram")
    assert set(published[:9]) == urgent_ids - {probe}
    assert len(published) == 9 + queue_capacity("telegram") - 25  # a task of 9 counts 25


@pytest.mark.django_db(transaction=True)
def test_deliveries_due_in_the_same_tick_are_published_most_urgent_first(make_patient, broker):
    for priority in (3, 5, 3, 1, 2):
        patient = make_patient()
        message_schedule(
            patient=patient, content=f"p{priority}", starts_at=ago(1), priority=priority
        )
    dispatch_due()
    published = broker.queued_deliveries("deliver.telegram")
    priorities = [Delivery.objects.get(pk=pk).priority for pk in published]
    assert priorities == [1, 2, 3, 3, 5]


def test_the_status_page_shows_a_breaker_past_its_open_period_as_probing(
    settings, admin_client, broker
):
    settings.BREAKER_FAILURE_THRESHOLD = 1
    settings.BREAKER_OPEN_SECONDS = 1.0
    breaker_record("telegram", success=False)
    assert '<td class="open">open</td>' in admin_client.get("/ops/channels/").content.decode()
    time.sleep(1.05)
    assert '<td class="probing">probing</td>' in admin_client.get("/ops/channels/").content.decode()
    breaker_allow("telegram")  # a delivery takes the probe: half-open
    assert '<td class="probing">probing</td>' in admin_client.get("/ops/channels/").content.decode()


def test_the_status_page_shows_an_open_breaker_and_the_backlog(settings, admin_client, broker):
    settings.BREAKER_FAILURE_THRESHOLD = 1
    breaker_record("telegram", success=False)
    page = admin_client.get("/ops/channels/").content.decode()
    assert '<td class="open">open</td>' in page
    breaker_record("telegram", success=True)
    assert '<td class="closed">closed</td>' in admin_client.get("/ops/channels/").content.decode()


def test_a_failed_delivery_retried_in_the_admin_is_sent_with_a_fresh_budget(
    settings, demo_client, fake_telegram, make_patient
):
    settings.DELIVERY_MAX_ATTEMPTS = 1
    [delivery] = due_deliveries(make_patient, 1)
    fake_telegram.push(Reply.server_error(502))
    assert deliver(delivery.pk).status == DeliveryStatus.FAILED

    response = demo_client.post(
        "/admin/scheduling/delivery/",
        {"action": "retry_deliveries", "_selected_action": [delivery.pk]},
        follow=True,
    )
    assert "1 deliveries queued again, 0 skipped" in response.content.decode()
    assert deliver(delivery.pk).status == DeliveryStatus.SENT
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.attempts_before_retry) == (2, 1)

    page = demo_client.get(f"/admin/scheduling/delivery/{delivery.pk}/change/").content.decode()
    for event in ("attempt 1: Transient error (network", "Retried by hand by user",
                  "attempt 2: Sent", "sent"):  # fmt: skip
        assert event in page, event


def test_a_sent_delivery_is_not_retried(demo_client, fake_telegram, make_patient):
    [delivery] = due_deliveries(make_patient, 1)
    deliver(delivery.pk)
    response = demo_client.post(
        "/admin/scheduling/delivery/",
        {"action": "retry_deliveries", "_selected_action": [delivery.pk]},
        follow=True,
    )
    assert "0 deliveries queued again, 1 skipped" in response.content.decode()
    assert len(fake_telegram.sent()) == 1


def test_the_status_page_counts_every_priority_list_of_a_queue(db, broker):
    from scheduling.channel_status import channel_statuses

    enqueue_deliveries([(1, "telegram", 1), (2, "telegram", 3), (3, "telegram", 5)])
    [telegram] = [s for s in channel_statuses() if s.channel == "telegram"]
    assert telegram.queue_depth == 3  # three tasks, on three priority lists
