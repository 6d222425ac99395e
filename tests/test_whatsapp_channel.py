"""The WhatsApp adapter against the fake Cloud API server: each answer to its category."""

import logging

import pytest

from channels_app.base import OutboundMessage, PermanentError, RecipientBlocked, TransientError
from channels_app.whatsapp import WhatsAppChannel
from tests.fakes.whatsapp_server import FakeWhatsApp, Reply

TOKEN = "EAAG-secret-token"
PHONE_NUMBER_ID = "106540352242922"


def message(text="Hello", fmt="text", address="+4915112345678"):
    return OutboundMessage(delivery_id=7, patient_id=1, channel="whatsapp", address=address,
                           text=text, format=fmt)  # fmt: skip


@pytest.fixture
def fake_whatsapp():
    fake = FakeWhatsApp().start()
    yield fake
    fake.stop()


@pytest.fixture
def channel(fake_whatsapp):
    return WhatsAppChannel(token=TOKEN, phone_number_id=PHONE_NUMBER_ID,
                           base_url=fake_whatsapp.base_url, timeout=1)  # fmt: skip


def send_expecting(channel, error):
    with pytest.raises(error) as raised:
        channel.send(message())
    return raised.value


def test_it_posts_a_text_message_with_the_bearer_token(channel, fake_whatsapp):
    result = channel.send(message("Take 1 pill"))
    [call] = fake_whatsapp.calls()
    assert call.phone_number_id == PHONE_NUMBER_ID
    assert call.authorization == f"Bearer {TOKEN}"
    assert call.content_type.startswith("application/json")
    assert call.params == {
        "messaging_product": "whatsapp", "recipient_type": "individual",
        "to": "4915112345678", "type": "text",
        "text": {"preview_url": False, "body": "Take 1 pill"},
    }  # fmt: skip
    assert result.provider_message_id.startswith("wamid.")


def test_html_arrives_as_whatsapp_markup(channel, fake_whatsapp):
    channel.send(message("<b>Dose</b> at <i>8:00</i>, see <a href='https://x.org'>here</a>",
                         fmt="html"))  # fmt: skip
    body = fake_whatsapp.calls()[0].params["text"]["body"]
    assert body == "*Dose* at _8:00_, see here (https://x.org)"


def test_angle_brackets_and_ampersands_arrive_as_typed(channel, fake_whatsapp):
    channel.send(message("glucose < 4 & > 10 mmol/l"))
    channel.send(message("glucose &lt; 4 &amp; <b>&gt; 10</b>", fmt="html"))
    bodies = [call.params["text"]["body"] for call in fake_whatsapp.calls()]
    assert bodies == ["glucose < 4 & > 10 mmol/l", "glucose < 4 & *> 10*"]


def test_a_long_text_is_sent_in_parts_of_at_most_4096_characters(channel, fake_whatsapp):
    paragraphs = [f"Paragraph {n}: " + "word " * 300 for n in range(10)]
    text = "\n\n".join(paragraphs)
    channel.send(message(text))
    bodies = [call.params["text"]["body"] for call in fake_whatsapp.sent()]
    assert len(bodies) > 1
    assert all(len(body) <= 4096 for body in bodies)
    assert all(body.startswith("Paragraph") for body in bodies)  # cut between paragraphs
    assert " ".join(bodies).split() == text.split()  # in order, nothing lost


def test_the_message_id_lists_the_ids_of_all_parts(channel, fake_whatsapp):
    result = channel.send(message("x " * 5000))
    assert len(fake_whatsapp.sent()) == 3
    ids = result.provider_message_id.split(",")
    assert len(ids) == 3 and all(i.startswith("wamid.") for i in ids)


@pytest.mark.parametrize(
    ("reply", "error", "code"),
    [
        (Reply.throughput_limit(), TransientError, "rate_limited"),
        (Reply.too_many_calls(), TransientError, "rate_limited"),
        (Reply.waba_rate_limit(), TransientError, "rate_limited"),
        (Reply.pair_rate_limit(400), TransientError, "rate_limited"),
        (Reply.pair_rate_limit(429), TransientError, "rate_limited"),
        (Reply.graph_error(429, 0, "Too many requests"), TransientError, "rate_limited"),
        (Reply.re_engagement(), PermanentError, "template_required"),
        (Reply.undeliverable(), PermanentError, "whatsapp_131026"),
        (Reply.not_in_allowed_list(), PermanentError, "whatsapp_131030"),
        (Reply.invalid_parameter(131009), PermanentError, "whatsapp_131009"),
        (Reply.invalid_parameter(100), PermanentError, "whatsapp_100"),
        (Reply.spam_rate_limit(), PermanentError, "whatsapp_131048"),
        (Reply.stopped_marketing(), RecipientBlocked, "whatsapp_131050"),
        (Reply.blocked(), RecipientBlocked, "whatsapp_131999"),
        (Reply.token_expired(), PermanentError, "not_configured"),
        (Reply.graph_error(401, 0, "Invalid OAuth access token"), PermanentError,
         "not_configured"),
        (Reply.server_error(500), TransientError, "network"),
        (Reply.server_error(503), TransientError, "network"),
        (Reply.not_json(502), TransientError, "network"),
        (Reply.not_json(200), TransientError, "network"),
        (Reply(200, {"messaging_product": "whatsapp", "messages": []}), TransientError,
         "network"),
        (Reply.slow(2.5), TransientError, "network"),
        (Reply.dropped(), TransientError, "network"),
    ],
)  # fmt: skip
def test_it_sorts_provider_answers_into_error_categories(
    channel, fake_whatsapp, reply, error, code
):
    fake_whatsapp.push(reply)
    assert send_expecting(channel, error).code == code


@pytest.mark.parametrize(
    ("reply", "retry_after"),
    [
        (Reply.throughput_limit(), 1.0),
        (Reply.pair_rate_limit(), 6.0),
        (Reply.throughput_limit(retry_after="17"), 17.0),
        (Reply.pair_rate_limit(429, retry_after="30"), 30.0),
        (Reply.pair_rate_limit(retry_after="soon"), 6.0),
    ],
)
def test_a_rate_limit_waits_for_retry_after_or_a_default_per_code(
    channel, fake_whatsapp, reply, retry_after
):
    fake_whatsapp.push(reply)
    assert send_expecting(channel, TransientError).retry_after == retry_after


def test_a_permanent_error_keeps_metas_reason_without_the_phone_number(channel, fake_whatsapp):
    fake_whatsapp.push(Reply.undeliverable())
    reason = send_expecting(channel, PermanentError).reason
    assert "Message Undeliverable" in reason
    assert "1234" not in reason


def test_a_known_refusal_that_mentions_a_block_stays_a_permanent_error(channel, fake_whatsapp):
    details = "The recipient may have blocked the business."
    fake_whatsapp.push(Reply.graph_error(400, 131026, "(#131026) Message Undeliverable", details))
    assert send_expecting(channel, PermanentError).code == "whatsapp_131026"


def test_a_failed_part_stops_the_parts_after_it(channel, fake_whatsapp):
    fake_whatsapp.push(Reply(), Reply.pair_rate_limit())
    with pytest.raises(TransientError):
        channel.send(message("y " * 5000))
    assert len(fake_whatsapp.calls()) == 2


@pytest.mark.parametrize(
    ("token", "phone_number_id", "variable"),
    [("", PHONE_NUMBER_ID, "WHATSAPP_TOKEN"), (TOKEN, "", "WHATSAPP_PHONE_NUMBER_ID")],
)
def test_it_is_not_configured_without_token_or_phone_number_id(
    fake_whatsapp, token, phone_number_id, variable
):
    channel = WhatsAppChannel(token=token, phone_number_id=phone_number_id,
                              base_url=fake_whatsapp.base_url, timeout=1)  # fmt: skip
    error = send_expecting(channel, PermanentError)
    assert error.code == "not_configured"
    assert variable in error.reason
    assert fake_whatsapp.calls() == []


def test_an_unreachable_server_is_transient():
    closed = WhatsAppChannel(token=TOKEN, phone_number_id=PHONE_NUMBER_ID,
                             base_url="http://127.0.0.1:9/v21.0", timeout=1)  # fmt: skip
    assert send_expecting(closed, TransientError).code == "network"


def test_a_rejected_token_is_not_repeated_in_errors_or_logs(channel, fake_whatsapp, caplog):
    fake_whatsapp.push(Reply.token_expired())
    caplog.set_level(logging.DEBUG)
    error = send_expecting(channel, PermanentError)
    assert TOKEN not in str(error)
    assert TOKEN not in caplog.text


def test_logs_carry_the_delivery_id_not_the_number_or_the_text(channel, caplog):
    caplog.set_level(logging.DEBUG, logger="channels_app")
    channel.send(message("Secret diagnosis"))
    assert "delivery 7" in caplog.text
    assert "Secret" not in caplog.text
    assert "4915112345678" not in caplog.text
