"""deliver() without Celery: claim, re-check, send to the fake server, record."""

from datetime import timedelta

import pytest
from django.utils import timezone

from patients.models import Contact
from scheduling.delivery import deliver, retry_delay
from scheduling.dispatch import dispatch_due
from scheduling.models import (
    AttemptOutcome,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    MessageStatus,
    ScheduledMessage,
)
from scheduling.services import message_cancel, message_schedule
from tests.conftest import ago, from_now
from tests.fakes.telegram_server import Reply


def due_delivery(patient, **kwargs) -> Delivery:
    kwargs.setdefault("content", "Take your medication")
    message = message_schedule(patient=patient, starts_at=ago(1), **kwargs)
    dispatch_due()
    return message.deliveries.get()


def test_it_sends_and_records_the_provider_message_id(fake_telegram, patient):
    delivery = due_delivery(patient, content="<b>Dose</b> now", format="html")

    outcome = deliver(delivery.pk)

    delivery.refresh_from_db()
    assert outcome.status == delivery.status == DeliveryStatus.SENT
    [call] = fake_telegram.sent()
    assert call.params == {"chat_id": delivery.contact.address, "text": "<b>Dose</b> now",
                           "parse_mode": "HTML"}  # fmt: skip
    assert delivery.provider_message_id
    assert delivery.sent_at is not None
    attempt = delivery.attempt_log.get()
    assert attempt.outcome == AttemptOutcome.SENT
    assert attempt.finished_at >= attempt.started_at
    assert attempt.duration_ms is not None


def test_running_the_task_twice_sends_once(fake_telegram, patient):
    delivery = due_delivery(patient)
    deliver(delivery.pk)
    second = deliver(delivery.pk)
    assert second.status == DeliveryStatus.SENT
    assert len(fake_telegram.calls()) == 1


def test_a_delivery_leased_by_another_worker_is_left_alone(fake_telegram, patient):
    delivery = due_delivery(patient)
    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.SENDING, lease_until=from_now(60)
    )
    assert deliver(delivery.pk).status == DeliveryStatus.SENDING
    assert fake_telegram.calls() == []


def test_it_rechecks_cancellation_at_send_time(fake_telegram, patient):
    delivery = due_delivery(patient)
    # Cancelled after dispatch, while the task waited in the queue.
    ScheduledMessage.objects.filter(pk=delivery.message_id).update(status=MessageStatus.CANCELLED)

    assert deliver(delivery.pk).status == DeliveryStatus.CANCELLED
    assert fake_telegram.calls() == []


def test_cancelling_a_message_cancels_its_queued_deliveries(fake_telegram, patient):
    delivery = due_delivery(patient)
    assert message_cancel(delivery.message, reason="test") == 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.CANCELLED
    assert deliver(delivery.pk).status == DeliveryStatus.CANCELLED
    assert fake_telegram.calls() == []


def test_it_does_not_send_to_a_patient_who_opted_out(fake_telegram, patient):
    delivery = due_delivery(patient)
    patient.opted_out_at = timezone.now()
    patient.save()
    assert deliver(delivery.pk).status == DeliveryStatus.CANCELLED
    assert fake_telegram.calls() == []


def test_it_expires_a_delivery_past_its_window(fake_telegram, patient):
    message = message_schedule(
        patient=patient, content="late", starts_at=ago(30), delivery_window_seconds=60
    )
    dispatch_due()
    delivery = message.deliveries.get()
    # The worker picks it up only after its window (a long queue, a slow retry).
    Delivery.objects.filter(pk=delivery.pk).update(expires_at=ago(1))

    assert deliver(delivery.pk).status == DeliveryStatus.EXPIRED
    delivery.refresh_from_db()
    assert delivery.error_code == "window_passed"
    assert fake_telegram.calls() == []


@pytest.mark.parametrize(
    ("reply", "code"),
    [(Reply.server_error(502), "network"), (Reply.slow(3), "network"),
     (Reply.dropped(), "network"), (Reply.too_many_requests(7), "rate_limited")],
)  # fmt: skip
def test_a_transient_error_requeues_with_backoff(fake_telegram, patient, settings, reply, code):
    settings.TELEGRAM_TIMEOUT_SECONDS = 1
    delivery = due_delivery(patient)
    fake_telegram.push(reply)

    outcome = deliver(delivery.pk)

    delivery.refresh_from_db()
    assert outcome.status == delivery.status == DeliveryStatus.QUEUED
    assert outcome.retry_in is not None and outcome.retry_in >= 0
    assert delivery.next_attempt_at > timezone.now() - timedelta(seconds=1)
    assert delivery.error_code == code
    assert delivery.attempt_log.get().outcome == AttemptOutcome.TRANSIENT
    if code == "rate_limited":
        assert outcome.retry_in >= 7


def test_a_retry_that_comes_early_waits_for_its_time(fake_telegram, patient):
    delivery = due_delivery(patient)
    fake_telegram.push(Reply.too_many_requests(30))
    deliver(delivery.pk)

    early = deliver(delivery.pk)

    assert early.status == DeliveryStatus.QUEUED
    assert 25 <= early.retry_in <= 31
    assert len(fake_telegram.calls()) == 1


def test_it_gives_up_after_max_attempts(fake_telegram, patient, settings):
    settings.DELIVERY_MAX_ATTEMPTS = 2
    delivery = due_delivery(patient)
    fake_telegram.push(Reply.server_error(), Reply.server_error())

    deliver(delivery.pk)
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    outcome = deliver(delivery.pk)

    assert outcome.status == DeliveryStatus.FAILED
    assert outcome.retry_in is None
    assert delivery.attempt_log.count() == 2


def test_it_expires_instead_of_retrying_past_the_window(fake_telegram, patient):
    message = message_schedule(
        patient=patient, content="x", starts_at=ago(1), delivery_window_seconds=60
    )
    dispatch_due()
    fake_telegram.push(Reply.too_many_requests(120))

    outcome = deliver(message.deliveries.get().pk)

    assert outcome.status == DeliveryStatus.EXPIRED
    assert outcome.retry_in is None


def test_chat_not_found_fails_permanently_with_the_reason(fake_telegram, patient):
    delivery = due_delivery(patient)
    fake_telegram.push(Reply.chat_not_found())

    outcome = deliver(delivery.pk)

    delivery.refresh_from_db()
    assert outcome.status == delivery.status == DeliveryStatus.FAILED
    assert delivery.error_code == "bad_request"
    assert "chat not found" in delivery.error_text.lower()
    assert outcome.retry_in is None


def test_it_pauses_schedules_and_blocks_the_contact_when_the_patient_blocks_the_bot(
    fake_telegram, patient
):
    other = message_schedule(patient=patient, content="daily", starts_at=from_now(60),
                             recurrence="FREQ=DAILY", channel="telegram")  # fmt: skip
    delivery = due_delivery(patient)
    fake_telegram.push(Reply.blocked())

    deliver(delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.error_code == "recipient_blocked"
    contact = Contact.objects.get(patient=patient)
    assert contact.blocked_at is not None
    other.refresh_from_db()
    assert other.status == MessageStatus.PAUSED
    assert delivery.attempt_log.get().outcome == AttemptOutcome.BLOCKED


def test_a_blocked_contact_is_not_sent_to_again(fake_telegram, patient):
    delivery = due_delivery(patient)
    Contact.objects.filter(patient=patient).update(blocked_at=timezone.now())

    assert deliver(delivery.pk).status == DeliveryStatus.FAILED
    delivery.refresh_from_db()
    assert delivery.error_code == "no_contact"
    assert fake_telegram.calls() == []


def test_a_send_whose_worker_died_is_retried_and_counted_as_interrupted(fake_telegram, patient):
    delivery = due_delivery(patient)
    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.SENDING, attempts=1, lease_until=ago(1)
    )
    DeliveryAttempt.objects.create(delivery=delivery, number=1, started_at=ago(200))

    assert deliver(delivery.pk).status == DeliveryStatus.SENT

    outcomes = list(delivery.attempt_log.values_list("outcome", flat=True))
    assert outcomes == [AttemptOutcome.INTERRUPTED, AttemptOutcome.SENT]


def test_the_web_inbox_stores_the_message_once(patient, make_patient):
    web_patient = make_patient(chat_id=None)
    delivery = due_delivery(web_patient, content="Your results are ready")

    deliver(delivery.pk)
    Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.QUEUED)
    deliver(delivery.pk)

    inbox = list(web_patient.inbox.values_list("body", flat=True))
    assert inbox == ["Your results are ready"]


def test_a_telegram_channel_without_a_token_fails_with_a_clear_reason(
    fake_telegram, patient, settings
):
    settings.TELEGRAM_BOT_TOKEN = ""
    delivery = due_delivery(patient)
    deliver(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.error_text == "TELEGRAM_BOT_TOKEN is not set"


def test_the_sandbox_records_instead_of_sending(fake_telegram, patient, settings):
    settings.CHANNEL_SANDBOX = True
    delivery = due_delivery(patient, content="hello")

    deliver(delivery.pk)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.provider_message_id.startswith("sandbox-")
    assert fake_telegram.calls() == []
    from channels_app.models import SandboxMessage

    assert SandboxMessage.objects.get().text == "hello"


def test_backoff_grows_is_capped_and_honours_retry_after(settings):
    settings.DELIVERY_RETRY_BASE_SECONDS = 2
    settings.DELIVERY_RETRY_MAX_SECONDS = 60
    for attempt in range(1, 12):
        ceiling = min(60, 2 * 2 ** (attempt - 1))
        delays = [retry_delay(attempt, None) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
    assert all(retry_delay(1, 30) >= 30 for _ in range(50))
    spread = {round(retry_delay(5, None), 3) for _ in range(50)}
    assert len(spread) > 10, "no jitter"


@pytest.mark.parametrize(("other_contact", "moved_to"),
                         [(("whatsapp", "+4915112345678"), "whatsapp"), (None, "web")])  # fmt: skip
def test_after_a_block_messages_that_follow_the_preference_move_to_the_next_channel(
    fake_telegram, patient, other_contact, moved_to
):
    if other_contact:
        Contact.objects.create(patient=patient, channel=other_contact[0], address=other_contact[1],
                               verified_at=timezone.now())  # fmt: skip
    follower = message_schedule(patient=patient, content="daily", starts_at=from_now(60),
                                recurrence="FREQ=DAILY")  # fmt: skip
    assert follower.channel == "telegram"
    delivery = due_delivery(patient)
    fake_telegram.push(Reply.blocked())

    deliver(delivery.pk)

    follower.refresh_from_db()
    assert (follower.status, follower.channel) == (MessageStatus.ACTIVE, moved_to)
    assert "blocked us on telegram" in follower.status_reason
    assert f"moved to {moved_to}" in follower.status_reason
