"""Inbound WhatsApp (Meta's webhook) and SMS (Twilio's webhook): signatures, STOP, and
the text commands without a slash. WhatsApp replies go to the fake Cloud API server."""

import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from conversations.callbacks import twilio_signature
from conversations.inbound import inbound_process, inbound_sweep
from patients.models import Channel, Contact, InboundUpdate, Patient
from scheduling.models import MessageStatus, ScheduledMessage
from scheduling.services import message_schedule
from tests.fakes.twilio_server import AUTH_TOKEN
from tests.fakes.whatsapp_server import FakeWhatsApp

APP_SECRET = "meta-app-secret"
VERIFY_TOKEN = "verify-me"
PUBLIC_BASE_URL = "https://companion.example.org"
WHATSAPP_URL = "/channels/whatsapp/inbound/"
TWILIO_URL = "/channels/twilio/inbound/"
NUMBER = "+4915112345678"


@pytest.fixture
def fake_whatsapp(settings):
    fake = FakeWhatsApp().start()
    settings.WHATSAPP_API_BASE_URL = fake.base_url
    settings.WHATSAPP_TOKEN = "whatsapp-token"
    settings.WHATSAPP_PHONE_NUMBER_ID = "1234567890"
    settings.WHATSAPP_APP_SECRET = APP_SECRET
    settings.WHATSAPP_VERIFY_TOKEN = VERIFY_TOKEN
    settings.CHANNEL_SANDBOX = False
    yield fake
    fake.stop()


@pytest.fixture
def twilio(settings):
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.PUBLIC_BASE_URL = PUBLIC_BASE_URL
    return settings


def patient_on(make_patient, channel: str, *, verified: bool = True) -> Patient:
    patient = make_patient(chat_id=None)
    Contact.objects.create(patient=patient, channel=channel, address=NUMBER,
                           verified_at=timezone.now() if verified else None)  # fmt: skip
    return patient


# -- WhatsApp ----------------------------------------------------------------------------


def whatsapp_body(
    text: str, *, message_id: str = "wamid.HBgM1", sender: str = NUMBER, sent_at=None
) -> dict:
    """A Cloud API `messages` webhook as Meta posts it, the message sent now by default."""
    timestamp = str(int((sent_at or timezone.now()).timestamp()))
    return {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [
        {"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "1234567890"},
            "contacts": [{"profile": {"name": "Pat"}, "wa_id": sender.removeprefix("+")}],
            "messages": [{"from": sender.removeprefix("+"), "id": message_id,
                          "timestamp": timestamp, "type": "text", "text": {"body": text}}],
        }}]}]}  # fmt: skip


def post_whatsapp(client, body: dict, *, secret: str = APP_SECRET, signature: str | None = None):
    raw = json.dumps(body).encode()
    if signature is None:
        signature = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return client.post(WHATSAPP_URL, data=raw, content_type="application/json",
                       HTTP_X_HUB_SIGNATURE_256=signature)  # fmt: skip


def process_all() -> None:
    for pk in InboundUpdate.objects.filter(processed_at__isnull=True).values_list("pk", flat=True):
        assert inbound_process(pk) == "processed"


def whatsapp_replies(fake) -> list[str]:
    return [call.params["text"]["body"] for call in fake.sent()]


@pytest.mark.parametrize(
    "signature",
    ["", "sha256=", "sha256=" + "0" * 64, "sha1=abc", "sha256=ünïcode"],
)
def test_whatsapp_refuses_a_post_without_a_valid_signature(client, fake_whatsapp, db, signature):
    response = post_whatsapp(client, whatsapp_body("STOP"), signature=signature)

    assert response.status_code == 403
    assert not InboundUpdate.objects.exists()


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"\xff\xfe", b"[" * 2_000 + b"]" * 2_000, b'{"entry": ' * 50 + b"1" + b"}" * 50],
)
def test_whatsapp_answers_400_to_a_signed_body_that_is_not_its_json(client, fake_whatsapp, db, raw):
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    response = client.post(
        WHATSAPP_URL, data=raw, content_type="application/json", HTTP_X_HUB_SIGNATURE_256=signature
    )
    assert response.status_code == 400
    assert not InboundUpdate.objects.exists()


def test_whatsapp_refuses_a_post_signed_with_another_secret(client, fake_whatsapp, db):
    assert post_whatsapp(client, whatsapp_body("STOP"), secret="other").status_code == 403


def test_whatsapp_refuses_everything_while_no_app_secret_is_set(client, fake_whatsapp, settings):
    settings.WHATSAPP_APP_SECRET = ""

    assert post_whatsapp(client, whatsapp_body("STOP"), secret="").status_code == 403


def test_whatsapp_verification_handshake_echoes_the_challenge_only_for_our_token(
    client, fake_whatsapp
):
    params = {"hub.mode": "subscribe", "hub.challenge": "1158201444"}

    good = client.get(WHATSAPP_URL, {**params, "hub.verify_token": VERIFY_TOKEN})
    bad = client.get(WHATSAPP_URL, {**params, "hub.verify_token": "guess"})

    assert (good.status_code, good.content) == (200, b"1158201444")
    assert bad.status_code == 403


def test_whatsapp_stop_opts_the_patient_out(client, fake_whatsapp, make_patient):
    patient = patient_on(make_patient, Channel.WHATSAPP)
    message = message_schedule(patient=patient, content="Hello",
                               starts_at=timezone.now() + timedelta(hours=1))  # fmt: skip

    assert post_whatsapp(client, whatsapp_body("STOP")).status_code == 200
    process_all()

    patient.refresh_from_db()
    message.refresh_from_db()
    assert patient.opted_out_at is not None and patient.last_interaction_at is not None
    assert message.status == MessageStatus.PAUSED
    (reply,) = whatsapp_replies(fake_whatsapp)
    assert "no more messages" in reply and "start" in reply and "/start" not in reply


def test_whatsapp_schedule_command_creates_a_reminder(client, fake_whatsapp, make_patient):
    patient = patient_on(make_patient, Channel.WHATSAPP)

    post_whatsapp(client, whatsapp_body("schedule daily 08:00 Take pills"))
    process_all()

    message = ScheduledMessage.objects.get(patient=patient)
    assert (message.content, message.created_by_patient) == ("Take pills", True)
    assert message.recurrence.startswith("FREQ=DAILY")
    (reply,) = whatsapp_replies(fake_whatsapp)
    assert f"Reminder #{message.pk} saved" in reply


def test_whatsapp_list_and_cancel_work_without_a_slash(client, fake_whatsapp, make_patient):
    patient = patient_on(make_patient, Channel.WHATSAPP)
    post_whatsapp(client, whatsapp_body("schedule daily 08:00 Take pills", message_id="w1"))
    process_all()
    message = ScheduledMessage.objects.get(patient=patient)

    post_whatsapp(client, whatsapp_body("scheduled", message_id="w2"))
    process_all()
    post_whatsapp(client, whatsapp_body(f"cancel {message.pk}", message_id="w3"))
    process_all()

    replies = whatsapp_replies(fake_whatsapp)
    assert f"#{message.pk} daily at 08:00" in replies[1]
    assert replies[2] == f"Reminder #{message.pk} is cancelled."
    message.refresh_from_db()
    assert message.status == MessageStatus.CANCELLED


def test_a_redelivered_whatsapp_message_is_run_once(client, fake_whatsapp, make_patient):
    patient = patient_on(make_patient, Channel.WHATSAPP)
    body = whatsapp_body("schedule daily 08:00 Take pills")

    post_whatsapp(client, body)
    post_whatsapp(client, body)
    process_all()

    assert ScheduledMessage.objects.filter(patient=patient).count() == 1


def test_a_whatsapp_message_replayed_weeks_later_is_still_run_once(
    client, fake_whatsapp, make_patient, settings
):
    patient = patient_on(make_patient, Channel.WHATSAPP)
    body = whatsapp_body("STOP")
    post_whatsapp(client, body)
    process_all()
    Patient.objects.filter(pk=patient.pk).update(opted_out_at=None)  # they wrote START since

    # The sweeps of the weeks after: the payload went long ago, the provider's id stays.
    later = timezone.now() + timedelta(days=settings.INBOUND_KEEP_DAYS + 7)
    assert inbound_sweep(now=later)["deleted"] == 0
    assert post_whatsapp(client, body).status_code == 200
    process_all()

    patient.refresh_from_db()
    assert patient.opted_out_at is None
    assert len(whatsapp_replies(fake_whatsapp)) == 1


def test_a_whatsapp_message_older_than_the_replay_window_is_ignored(
    client, fake_whatsapp, make_patient, settings
):
    patient = patient_on(make_patient, Channel.WHATSAPP)
    sent_at = timezone.now() - timedelta(days=settings.INBOUND_REPLAY_KEEP_DAYS, minutes=1)

    response = post_whatsapp(client, whatsapp_body("STOP", sent_at=sent_at))

    assert response.status_code == 200  # or Meta would send it again
    assert not InboundUpdate.objects.exists()
    patient.refresh_from_db()
    assert patient.opted_out_at is None


def test_provider_ids_are_forgotten_after_the_replay_window(client, fake_whatsapp, db, settings):
    post_whatsapp(client, whatsapp_body("help"))
    process_all()
    before = timezone.now() + timedelta(days=settings.INBOUND_REPLAY_KEEP_DAYS - 1)
    after = timezone.now() + timedelta(days=settings.INBOUND_REPLAY_KEEP_DAYS, minutes=1)

    assert inbound_sweep(now=before)["deleted"] == 0
    assert inbound_sweep(now=after)["deleted"] == 1


def test_an_update_never_processed_loses_what_the_patient_wrote_after_the_keep_days(
    client, fake_whatsapp, db, settings
):
    post_whatsapp(client, whatsapp_body("my blood pressure is 150/95"))
    later = timezone.now() + timedelta(days=settings.INBOUND_KEEP_DAYS, minutes=1)

    inbound_sweep(now=later)

    update = InboundUpdate.objects.get()
    assert update.payload == {} and update.processed_at is None
    assert post_whatsapp(client, whatsapp_body("my blood pressure is 150/95")).status_code == 200
    assert InboundUpdate.objects.count() == 1


def test_an_unknown_whatsapp_sender_gets_nothing(client, fake_whatsapp, db):
    post_whatsapp(client, whatsapp_body("help"))
    process_all()

    assert fake_whatsapp.calls() == []


def test_whatsapp_status_updates_are_accepted_and_ignored(client, fake_whatsapp, db):
    body = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "messages", "value": {"messaging_product": "whatsapp", "statuses": [
            {"id": "wamid.X", "status": "delivered", "timestamp": "1700000000",
             "recipient_id": "4915112345678"}]}}]}]}  # fmt: skip

    assert post_whatsapp(client, body).status_code == 200
    assert not InboundUpdate.objects.exists()


# -- SMS (Twilio) ------------------------------------------------------------------------


def post_sms(client, body: str, *, sid: str = "SM" + "a" * 32, sender: str = NUMBER,
             token: str = AUTH_TOKEN, signature: str | None = None):  # fmt: skip
    params = {"MessageSid": sid, "AccountSid": "AC" + "0" * 32, "From": sender,
              "To": "+15005550006", "Body": body, "NumMedia": "0"}  # fmt: skip
    if signature is None:
        signature = twilio_signature(token, PUBLIC_BASE_URL + TWILIO_URL, params.items())
    return client.post(TWILIO_URL, params, HTTP_X_TWILIO_SIGNATURE=signature)


@pytest.mark.parametrize("signature", ["", "bm90LWl0"])
def test_sms_refuses_a_post_without_a_valid_signature(client, twilio, db, signature):
    assert post_sms(client, "STOP", signature=signature).status_code == 403


def test_sms_refuses_a_post_signed_with_another_token(client, twilio, db):
    assert post_sms(client, "STOP", token="another-token").status_code == 403


@pytest.mark.parametrize("word", ["STOP", "stop", " Unsubscribe ", "QUIT", "cancel", "end"])
def test_sms_stop_words_opt_out_and_leave_the_answer_to_twilio(client, twilio, make_patient, word):
    patient = patient_on(make_patient, Channel.SMS)

    response = post_sms(client, word)

    assert response.status_code == 200 and response["Content-Type"] == "text/xml"
    assert response.content.decode().endswith("<Response/>")
    patient.refresh_from_db()
    assert patient.opted_out_at is not None


def test_sms_stop_is_honoured_from_an_unverified_number(client, twilio, make_patient):
    patient = patient_on(make_patient, Channel.SMS, verified=False)

    post_sms(client, "STOP")

    patient.refresh_from_db()
    assert patient.opted_out_at is not None


def test_sms_start_after_stop_opts_back_in(client, twilio, make_patient):
    patient = patient_on(make_patient, Channel.SMS)
    post_sms(client, "STOP", sid="SM1")

    post_sms(client, "START", sid="SM2")

    patient.refresh_from_db()
    assert patient.opted_out_at is None


def test_sms_schedule_command_creates_a_reminder_and_replies_in_twiml(client, twilio, make_patient):
    patient = patient_on(make_patient, Channel.SMS)

    response = post_sms(client, "schedule in 2h Check your blood pressure & rest")

    message = ScheduledMessage.objects.get(patient=patient)
    assert message.content == "Check your blood pressure & rest"
    assert message.recurrence == "" and message.created_by_patient
    body = response.content.decode()
    assert f"<Message>Reminder #{message.pk} saved" in body


def test_sms_commands_need_a_verified_number(client, twilio, make_patient):
    patient_on(make_patient, Channel.SMS, verified=False)

    response = post_sms(client, "schedule daily 08:00 Take pills")

    assert response.content.decode().endswith("<Response/>")
    assert not ScheduledMessage.objects.exists()


def test_an_unknown_sms_sender_gets_empty_twiml(client, twilio, db):
    response = post_sms(client, "help", sender="+15005550001")

    assert response.status_code == 200
    assert response.content.decode().endswith("<Response/>")


def test_a_repeated_sms_webhook_is_answered_once(client, twilio, make_patient):
    patient = patient_on(make_patient, Channel.SMS)

    first = post_sms(client, "schedule daily 08:00 Take pills")
    second = post_sms(client, "schedule daily 08:00 Take pills")

    assert "<Message>" in first.content.decode()
    assert second.content.decode().endswith("<Response/>")
    assert ScheduledMessage.objects.filter(patient=patient).count() == 1


def test_an_sms_webhook_replayed_weeks_later_is_answered_once(
    client, twilio, make_patient, settings
):
    patient = patient_on(make_patient, Channel.SMS)
    post_sms(client, "schedule daily 08:00 Take pills")

    inbound_sweep(now=timezone.now() + timedelta(days=settings.INBOUND_KEEP_DAYS + 7))
    replayed = post_sms(client, "schedule daily 08:00 Take pills")

    assert replayed.content.decode().endswith("<Response/>")
    assert ScheduledMessage.objects.filter(patient=patient).count() == 1


def test_inbound_sms_updates_last_interaction(client, twilio, make_patient):
    patient = patient_on(make_patient, Channel.SMS)

    post_sms(client, "help")

    patient.refresh_from_db()
    assert patient.last_interaction_at is not None
