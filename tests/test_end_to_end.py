"""The whole path with real processes: Beat -> dispatch_due -> Redis -> worker -> Telegram."""

import pytest

from patients.models import Contact
from scheduling.models import AttemptOutcome, Delivery, DeliveryStatus, MessageStatus
from scheduling.services import message_cancel, message_schedule
from tests.conftest import from_now
from tests.fakes.telegram_server import Reply

pytestmark = pytest.mark.e2e

# Tick (1 s) + worker pick-up + send, with room for a busy 2-core machine.
ARRIVAL_TIMEOUT = 20


def wait_for_status(delivery_filter, status, timeout=ARRIVAL_TIMEOUT):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = Delivery.objects.filter(**delivery_filter, status=status).first()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(
        f"no delivery {delivery_filter} reached {status}; have "
        f"{list(Delivery.objects.filter(**delivery_filter).values('status', 'error_code'))}"
    )


def test_a_message_due_in_3_seconds_reaches_telegram_through_beat_and_a_worker(
    celery_stack, fake_telegram, patient
):
    due = from_now(3)
    message = message_schedule(patient=patient, content="Take your medication", starts_at=due)
    chat_id = patient.contacts.get().address

    assert fake_telegram.wait_for(lambda: fake_telegram.sent(chat_id), ARRIVAL_TIMEOUT), (
        celery_stack.log("beat")[-3000:] + celery_stack.log("worker")[-3000:]
    )
    delivery = wait_for_status({"message": message}, DeliveryStatus.SENT)
    call = fake_telegram.sent(chat_id)[0]
    assert call.params["text"] == "Take your medication"
    assert call.at >= due.timestamp(), "sent before it was due"
    lateness = (delivery.sent_at - due).total_seconds()
    print(f"\nend-to-end lateness (sent_at - due): {lateness:.2f} s")
    assert delivery.attempt_log.get().outcome == AttemptOutcome.SENT
    message.refresh_from_db()
    assert message.status == MessageStatus.COMPLETED
    assert len(fake_telegram.sent()) == 1


def test_a_message_cancelled_before_its_time_is_never_sent(
    celery_stack, fake_telegram, make_patient
):
    cancelled_patient, control_patient = make_patient(), make_patient()
    cancelled = message_schedule(patient=cancelled_patient, content="x", starts_at=from_now(2))
    control = message_schedule(patient=control_patient, content="y", starts_at=from_now(3))
    message_cancel(cancelled, reason="test")

    wait_for_status({"message": control}, DeliveryStatus.SENT)
    cancelled_chat = cancelled_patient.contacts.get().address
    assert fake_telegram.sent(cancelled_chat) == []
    assert not Delivery.objects.filter(message=cancelled).exists()


def test_a_429_is_retried_after_retry_after_and_delivered_once(
    celery_stack, fake_telegram, patient
):
    chat_id = patient.contacts.get().address
    fake_telegram.push(Reply.too_many_requests(retry_after=2), chat_id=chat_id)
    message = message_schedule(patient=patient, content="Appointment at 10", starts_at=from_now(1))

    delivery = wait_for_status({"message": message}, DeliveryStatus.SENT)
    calls = fake_telegram.calls()
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 2.0, "retried before retry_after"
    assert len(fake_telegram.sent(chat_id)) == 1
    outcomes = list(delivery.attempt_log.values_list("outcome", "error_code"))
    assert outcomes == [(AttemptOutcome.TRANSIENT, "rate_limited"), (AttemptOutcome.SENT, "")]


def test_a_403_blocks_the_contact_pauses_schedules_tied_to_telegram_and_moves_the_rest(
    celery_stack, fake_telegram, patient
):
    chat_id = patient.contacts.get().address
    fake_telegram.push(Reply.blocked(), chat_id=chat_id)
    first = message_schedule(patient=patient, content="Check-in", starts_at=from_now(1))
    later = message_schedule(patient=patient, content="Daily", starts_at=from_now(3600),
                             recurrence="FREQ=DAILY", channel="telegram")  # fmt: skip
    follower = message_schedule(
        patient=patient, content="Daily", starts_at=from_now(3600), recurrence="FREQ=DAILY"
    )

    delivery = wait_for_status({"message": first}, DeliveryStatus.FAILED)
    assert delivery.error_code == "recipient_blocked"
    contact = Contact.objects.at("telegram", chat_id).get()
    assert contact.blocked_at is not None
    assert "blocked" in contact.blocked_reason
    later.refresh_from_db()
    assert later.status == MessageStatus.PAUSED
    assert "blocked" in later.status_reason
    # One that followed the patient's preference goes on through the next channel.
    follower.refresh_from_db()
    assert (follower.status, follower.channel) == (MessageStatus.ACTIVE, "web")
    assert len(fake_telegram.calls()) == 1, "a blocked recipient must not be retried"
