"""The Telegram adapter against the fake Bot API server: each answer to its category."""

import pytest

from channels_app.base import (
    OutboundMessage,
    PermanentError,
    RecipientBlocked,
    TransientError,
)
from channels_app.telegram import TelegramChannel
from tests.fakes.telegram_server import Reply


def message(text="Hello", fmt="text", chat_id="4242"):
    return OutboundMessage(delivery_id=1, patient_id=1, channel="telegram", address=chat_id,
                           text=text, format=fmt)  # fmt: skip


@pytest.fixture
def channel(fake_telegram):
    return TelegramChannel(token="123:ABC", base_url=fake_telegram.base_url, timeout=1)


def test_it_posts_send_message_with_the_token_in_the_path(channel, fake_telegram):
    result = channel.send(message("Plain <not a tag>"))
    [call] = fake_telegram.calls()
    assert call.token == "123:ABC"
    assert call.params == {"chat_id": "4242", "text": "Plain <not a tag>"}
    assert result.provider_message_id.isdigit()


def test_html_is_sent_in_html_parse_mode(channel, fake_telegram):
    channel.send(message("<b>bold</b>", fmt="html"))
    assert fake_telegram.calls()[0].params["parse_mode"] == "HTML"


def test_line_breaks_written_as_br_or_paragraphs_reach_telegram_as_newlines(channel, fake_telegram):
    # Telegram refuses <br> and <p> ("Unsupported start tag"); the fake does too.
    channel.send(message("one<br>two<br/>three<p>four &amp; <b>more</b></p><p>five</p>", "html"))
    [call] = fake_telegram.sent()
    assert call.params["text"] == "one\ntwo\nthree\n\nfour &amp; <b>more</b>\n\nfive"


@pytest.mark.parametrize(
    ("text", "description"),
    [("<div>x</div>", 'Unsupported start tag "div"'), ("<span>x</span>", "tg-spoiler"),
     ("<b>x", 'end tag corresponding to start tag "b"')],
)  # fmt: skip
def test_what_telegram_refuses_fails_for_good_naming_the_reason(
    channel, fake_telegram, text, description
):
    with pytest.raises(PermanentError) as raised:
        channel.send(message(text, "html"))
    # python-telegram-bot writes Telegram's description with a capital, the rest as is.
    assert raised.value.code == "bad_request"
    assert description.lower() in raised.value.reason.lower()


@pytest.mark.parametrize(
    ("reply", "error", "code"),
    [
        (Reply.too_many_requests(5), TransientError, "rate_limited"),
        (Reply.server_error(500), TransientError, "network"),
        (Reply.server_error(503), TransientError, "network"),
        (Reply.slow(2.5), TransientError, "network"),
        (Reply.dropped(), TransientError, "network"),
        (Reply.blocked(), RecipientBlocked, "forbidden"),
        (Reply.chat_not_found(), PermanentError, "bad_request"),
        (Reply(401, {"ok": False, "error_code": 401, "description": "Unauthorized"}),
         PermanentError, "invalid_token"),
    ],
)  # fmt: skip
def test_it_sorts_provider_answers_into_error_categories(
    channel, fake_telegram, reply, error, code
):
    fake_telegram.push(reply)
    with pytest.raises(error) as raised:
        channel.send(message())
    assert raised.value.code == code


def test_a_429_carries_the_providers_retry_after(channel, fake_telegram):
    fake_telegram.push(Reply.too_many_requests(17))
    with pytest.raises(TransientError) as raised:
        channel.send(message())
    assert raised.value.retry_after == 17


def test_an_unreachable_server_is_transient():
    closed = TelegramChannel(token="1:A", base_url="http://127.0.0.1:9", timeout=1)
    with pytest.raises(TransientError):
        closed.send(message())


def test_the_invalid_token_error_does_not_repeat_the_token(fake_telegram):
    channel = TelegramChannel(token="999:SECRET", base_url=fake_telegram.base_url, timeout=1)
    fake_telegram.push(Reply(401, {"ok": False, "error_code": 401, "description": "Unauthorized"}))
    with pytest.raises(PermanentError) as raised:
        channel.send(message())
    assert "SECRET" not in str(raised.value)
