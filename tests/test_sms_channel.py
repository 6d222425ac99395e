"""The Twilio SMS adapter against the fake Twilio server, and Twilio's status callbacks."""

import base64
import hashlib
import hmac
import logging
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from channels_app.base import OutboundMessage, PermanentError, RecipientBlocked, TransientError
from channels_app.sms import TwilioSmsChannel, is_e164
from conversations.callbacks import twilio_signature
from scheduling.models import Delivery, DeliveryStatus, ScheduledMessage
from tests.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, Reply

NUMBER = "+4915112345678"
SENDER = "+15017122661"
SERVICE_SID = "MG" + "9" * 32
CALLBACK_URL = "https://companion.example.org/channels/twilio/status/"


def message(text="Hello", fmt="text", address=NUMBER):
    return OutboundMessage(delivery_id=9, patient_id=1, channel="sms", address=address,
                           text=text, format=fmt)  # fmt: skip


@pytest.fixture
def fake_twilio():
    fake = FakeTwilio().start()
    yield fake
    fake.stop()


def sms_channel(fake, **overrides) -> TwilioSmsChannel:
    options = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from_number": SENDER,
               "messaging_service_sid": "", "base_url": fake.base_url, "timeout": 1,
               "status_callback_url": CALLBACK_URL, **overrides}  # fmt: skip
    return TwilioSmsChannel(**options)


@pytest.fixture
def channel(fake_twilio):
    return sms_channel(fake_twilio)


def send_expecting(channel, error, **kwargs):
    with pytest.raises(error) as raised:
        channel.send(message(**kwargs))
    return raised.value


# The adapter


def test_it_posts_the_form_with_basic_auth_and_returns_the_sid(channel, fake_twilio):
    result = channel.send(message("Take 1 pill"))
    [call] = fake_twilio.calls()
    assert (call.account_sid, call.username, call.password) == (ACCOUNT_SID, ACCOUNT_SID,
                                                                AUTH_TOKEN)  # fmt: skip
    assert call.params == {"To": NUMBER, "Body": "Take 1 pill", "From": SENDER,
                           "StatusCallback": CALLBACK_URL}  # fmt: skip
    assert result.provider_message_id.startswith("SM")
    assert len(result.provider_message_id) == 34


def test_a_messaging_service_replaces_the_from_number(fake_twilio):
    sms_channel(fake_twilio, messaging_service_sid=SERVICE_SID).send(message())
    params = fake_twilio.calls()[0].params
    assert params["MessagingServiceSid"] == SERVICE_SID
    assert "From" not in params


def test_no_status_callback_is_asked_without_a_public_url(fake_twilio):
    sms_channel(fake_twilio, status_callback_url="").send(message())
    assert "StatusCallback" not in fake_twilio.calls()[0].params


def test_html_arrives_as_plain_text_with_characters_as_typed(channel, fake_twilio):
    channel.send(message("<b>Dose</b> &lt; 2 &amp; see <a href='https://x.org'>this</a>",
                         fmt="html"))  # fmt: skip
    channel.send(message("glucose < 4 & > 10"))
    bodies = [call.params["Body"] for call in fake_twilio.sent()]
    assert bodies == ["Dose < 2 & see this (https://x.org)", "glucose < 4 & > 10"]


@pytest.mark.parametrize(
    ("reply", "error", "code"),
    [
        (Reply.unsubscribed(), RecipientBlocked, "twilio_21610"),
        (Reply.invalid_to(), PermanentError, "twilio_21211"),
        (Reply.not_mobile(), PermanentError, "twilio_21614"),
        (Reply.region_not_enabled(), PermanentError, "twilio_21408"),
        (Reply.unreachable(), PermanentError, "twilio_21612"),
        (Reply.body_too_long(), PermanentError, "twilio_21617"),
        (Reply.too_many_requests(), TransientError, "rate_limited"),
        (Reply.error(400, 20429, "Too Many Requests"), TransientError, "rate_limited"),
        (Reply.authenticate(), PermanentError, "not_configured"),
        (Reply.server_error(500), TransientError, "network"),
        (Reply.server_error(503), TransientError, "network"),
        (Reply.not_json(502), TransientError, "network"),
        (Reply.not_json(201), TransientError, "network"),
        (Reply.slow(2.5), TransientError, "network"),
        (Reply.dropped(), TransientError, "network"),
    ],
)
def test_it_sorts_provider_answers_into_error_categories(channel, fake_twilio, reply, error, code):
    fake_twilio.push(reply)
    assert send_expecting(channel, error).code == code


@pytest.mark.parametrize(("header", "retry_after"), [("", 1.0), ("12", 12.0), ("later", 1.0)])
def test_a_429_waits_for_retry_after_or_one_second(channel, fake_twilio, header, retry_after):
    fake_twilio.push(Reply.too_many_requests(retry_after=header))
    assert send_expecting(channel, TransientError).retry_after == retry_after


@pytest.mark.parametrize(
    "reply",
    [Reply.invalid_to(), Reply.not_mobile(), Reply.region_not_enabled(), Reply.unreachable(),
     Reply.error(400, 21999, "Something about +15005550001 went wrong")],
)  # fmt: skip
def test_error_texts_carry_no_phone_number(channel, fake_twilio, reply):
    fake_twilio.push(reply)
    error = send_expecting(channel, PermanentError)
    assert not any(digits in str(error) for digits in ("5005550", "8613812345678"))


def test_wrong_credentials_are_not_configured_and_not_repeated(fake_twilio, caplog):
    caplog.set_level(logging.DEBUG)
    channel = sms_channel(fake_twilio, auth_token="wrong-secret-token")
    error = send_expecting(channel, PermanentError)
    assert error.code == "not_configured"
    assert "wrong-secret-token" not in str(error) + caplog.text


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"account_sid": ""}, "TWILIO_ACCOUNT_SID"),
        ({"auth_token": ""}, "TWILIO_AUTH_TOKEN"),
        ({"from_number": "", "messaging_service_sid": ""}, "TWILIO_MESSAGING_SERVICE_SID"),
    ],
)
def test_it_is_not_configured_without_credentials_or_a_sender(fake_twilio, overrides, variable):
    error = send_expecting(sms_channel(fake_twilio, **overrides), PermanentError)
    assert error.code == "not_configured"
    assert variable in error.reason
    assert fake_twilio.calls() == []


def test_a_number_that_is_not_e164_is_refused_before_sending(channel, fake_twilio):
    error = send_expecting(channel, PermanentError, address="015112345678")
    assert error.code == "invalid_number"
    assert "015112345678" not in str(error)
    assert fake_twilio.calls() == []


@pytest.mark.parametrize("number", ["+4915112345678", "+12025550123", "+1234567", "+" + "9" * 15])
def test_e164_numbers_pass(number):
    assert is_e164(number)


@pytest.mark.parametrize(
    "number",
    ["4915112345678", "+04915112345678", "+49 151 12345678", "+123456", "+" + "9" * 16,
     "+4915112345678\n", "", "+49151abc5678"],
)  # fmt: skip
def test_other_numbers_are_not_e164(number):
    assert not is_e164(number)


def test_an_unreachable_server_is_transient():
    closed = TwilioSmsChannel(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_number=SENDER,
                              messaging_service_sid="", base_url="http://127.0.0.1:9", timeout=1,
                              status_callback_url="")  # fmt: skip
    assert send_expecting(closed, TransientError).code == "network"


def test_logs_carry_the_delivery_id_not_the_number_or_the_text(channel, caplog):
    caplog.set_level(logging.DEBUG, logger="channels_app")
    channel.send(message("Secret diagnosis"))
    assert "delivery 9" in caplog.text
    assert "Secret" not in caplog.text
    assert "15112345678" not in caplog.text


# The status callback

PUBLIC_BASE_URL = "https://companion.example.org"
PATH = "/channels/twilio/status/"
MESSAGE_SID = "SM" + "a1" * 16


def signed(token: str, url: str, params: dict[str, str]) -> str:
    """Twilio's signature, written out here apart from the view's."""
    data = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def status_params(status: str, sid: str = MESSAGE_SID, **extra: str) -> dict[str, str]:
    """The form Twilio posts for a status change of an outbound SMS."""
    return {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "From": SENDER, "To": NUMBER,
            "MessageSid": sid, "SmsSid": sid, "SmsStatus": status, "MessageStatus": status,
            **extra}  # fmt: skip


@pytest.fixture
def twilio_settings(settings):
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.PUBLIC_BASE_URL = PUBLIC_BASE_URL
    return settings


@pytest.fixture
def sms_delivery(make_patient):
    now = timezone.now()
    patient = make_patient(chat_id=None)
    scheduled = ScheduledMessage.objects.create(
        organization=patient.organization, patient=patient, channel="sms", content="Hello",
        starts_at=now, next_run_at=now, next_occurrence_at=now,
    )  # fmt: skip
    return Delivery.objects.create(
        message=scheduled, occurrence_at=now, channel="sms", status=DeliveryStatus.SENT,
        sent_at=now, next_attempt_at=now, expires_at=now + timedelta(hours=1),
        provider_message_id=MESSAGE_SID,
    )  # fmt: skip


def post_status(client, params, *, signature=None, url=PUBLIC_BASE_URL + PATH):
    signature = signed(AUTH_TOKEN, url, params) if signature is None else signature
    return client.post(PATH, params, headers={"X-Twilio-Signature": signature})


def test_the_signature_matches_twilios_published_example():
    # The example from twilio-python's request validator tests.
    params = {"CallSid": "CA1234567890ABCDE", "Digits": "1234", "From": "+14158675309",
              "To": "+18005551212", "Caller": "+14158675309"}  # fmt: skip
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature("12345", url, params.items()) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_a_signed_callback_moves_the_provider_status_forward(client, twilio_settings, sms_delivery):
    response = post_status(client, status_params("delivered"))
    assert (response.status_code, response.content) == (200, b"")
    sms_delivery.refresh_from_db()
    assert sms_delivery.provider_status == "delivered"
    assert sms_delivery.provider_status_at is not None
    assert sms_delivery.status == DeliveryStatus.SENT


def test_statuses_follow_each_other_up_to_a_final_one(client, twilio_settings, sms_delivery):
    seen = []
    for status in ("queued", "sending", "sent", "delivered"):
        post_status(client, status_params(status))
        sms_delivery.refresh_from_db()
        seen.append(sms_delivery.provider_status)
    assert seen == ["queued", "sending", "sent", "delivered"]


@pytest.mark.parametrize(
    ("first", "late"),
    [("delivered", "sent"), ("sent", "queued"), ("delivered", "failed"), ("sent", "sent")],
)
def test_a_late_or_equal_callback_does_not_move_it_backward(
    client, twilio_settings, sms_delivery, first, late
):
    post_status(client, status_params(first))
    sms_delivery.refresh_from_db()
    first_at = sms_delivery.provider_status_at
    assert post_status(client, status_params(late, ErrorCode="30003")).status_code == 200
    sms_delivery.refresh_from_db()
    assert (sms_delivery.provider_status, sms_delivery.provider_status_at) == (first, first_at)
    assert sms_delivery.error_code == ""


def test_undelivered_stores_twilios_error_code(client, twilio_settings, sms_delivery):
    post_status(client, status_params("undelivered", ErrorCode="30003"))
    sms_delivery.refresh_from_db()
    assert sms_delivery.provider_status == "undelivered"
    assert sms_delivery.error_code == "twilio_30003"
    assert "30003" in sms_delivery.error_text
    assert "15112345678" not in sms_delivery.error_text
    assert sms_delivery.status == DeliveryStatus.SENT


@pytest.mark.parametrize(
    "signature",
    ["", "not-a-signature", signed("another-token", PUBLIC_BASE_URL + PATH,
                                   status_params("delivered"))],
)  # fmt: skip
def test_a_bad_or_missing_signature_is_refused(client, twilio_settings, sms_delivery, signature):
    response = post_status(client, status_params("delivered"), signature=signature)
    assert response.status_code == 403
    sms_delivery.refresh_from_db()
    assert sms_delivery.provider_status == ""


def test_a_parameter_changed_after_signing_is_refused(client, twilio_settings, sms_delivery):
    signature = signed(AUTH_TOKEN, PUBLIC_BASE_URL + PATH, status_params("sent"))
    response = post_status(client, status_params("delivered"), signature=signature)
    assert response.status_code == 403


def test_a_signature_for_another_address_is_refused(client, twilio_settings, sms_delivery):
    other = "https://elsewhere.example.org" + PATH
    response = post_status(client, status_params("delivered"), url=other)
    assert response.status_code == 403


def test_without_an_auth_token_every_callback_is_refused(client, twilio_settings, sms_delivery):
    twilio_settings.TWILIO_AUTH_TOKEN = ""
    assert post_status(client, status_params("delivered")).status_code == 403


def test_without_a_public_url_the_signed_address_is_the_one_django_sees(
    client, twilio_settings, sms_delivery
):
    twilio_settings.PUBLIC_BASE_URL = ""
    response = post_status(client, status_params("sent"), url="http://testserver" + PATH)
    assert response.status_code == 200
    sms_delivery.refresh_from_db()
    assert sms_delivery.provider_status == "sent"


def test_an_unknown_message_sid_is_answered_200(client, twilio_settings, sms_delivery):
    response = post_status(client, status_params("delivered", sid="SM" + "f" * 32))
    assert (response.status_code, response.content) == (200, b"")
    sms_delivery.refresh_from_db()
    assert sms_delivery.provider_status == ""


def test_a_get_is_not_allowed(client, twilio_settings):
    assert client.get(PATH).status_code == 405


@pytest.mark.django_db(transaction=True)
def test_a_callback_waiting_on_a_concurrent_final_one_does_not_move_it_back(
    twilio_settings, sms_delivery
):
    answers = []

    def late_sent_callback() -> None:
        try:
            answers.append(post_status(Client(), status_params("sent")).status_code)
        finally:
            connection.close()

    with transaction.atomic():
        # Holds the row lock as a concurrent "delivered" callback would.
        Delivery.objects.filter(pk=sms_delivery.pk).update(provider_status="delivered")
        late = threading.Thread(target=late_sent_callback)
        late.start()
        time.sleep(0.5)  # the late callback's UPDATE now waits for this transaction
    late.join(timeout=10)
    sms_delivery.refresh_from_db()
    assert answers == [200]
    assert sms_delivery.provider_status == "delivered"
