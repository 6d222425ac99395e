"""Arbitrary text never raises out of the bot's handlers, on any channel."""

import itertools
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conversations.bot.commands import handle_text, parse_command, split_phrase
from conversations.inbound import inbound_process
from patients.models import Channel, Contact, InboundUpdate
from scheduling.acknowledgements import acknowledge_press
from scheduling.phrases import PhraseError
from tests.fakes.telegram_server import callback_update, message_update

WORDS = ["daily", "08:00", "9:00", "every", "2h", "30m", "in", "30", "minutes", "tomorrow",
         "today", "at", "until", "2025-05-01", "count", "10", "times", "last", "day", "of",
         "the", "month", "weekly", "mon,wed", "2nd", "tuesday", "other", "hourly", "#12",
         "RRULE:FREQ=DAILY", "{", '{"type":', "99999999999999999999", "-1", "0", "Take",
         "pills", "\n", "@fake_bot", "/", "ü", "💊"]  # fmt: skip
COMMANDS = ["/schedule", "/scheduled", "/cancel_schedule", "/cancel", "/stop", "/start",
            "/help", "/schedule@fake_bot", "schedule", "scheduled", "cancel", "stop", "start",
            "help", "STOP", "yes", ""]  # fmt: skip

texts = st.one_of(
    st.text(max_size=300),
    st.builds(lambda command, words, tail: " ".join([command, *words, tail]),
              st.sampled_from(COMMANDS), st.lists(st.sampled_from(WORDS), max_size=14),
              st.text(max_size=40)),
)  # fmt: skip
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])  # fmt: skip


@pytest.fixture
def contacts(make_patient):
    patient = make_patient()
    for channel, address in ((Channel.SMS, "+4915112345678"), (Channel.WHATSAPP, "+4915112345679")):
        Contact.objects.create(patient=patient, channel=channel, address=address,
                               verified_at=patient.created_at)  # fmt: skip
    return {contact.channel: contact.address for contact in patient.contacts.all()}


@FUZZ
@given(text=texts, channel=st.sampled_from([Channel.TELEGRAM, Channel.WHATSAPP, Channel.SMS]),
       known=st.booleans())  # fmt: skip
def test_any_text_gets_an_answer_or_none_and_never_an_exception(contacts, text, channel, known):
    address = contacts[channel] if known else "+15005550009"

    reply = handle_text(channel=channel, address=address, text=text)

    assert reply is None or (isinstance(reply, str) and reply.strip())
    if known:
        assert reply  # a known patient always gets an answer


@FUZZ
@given(args=st.text(max_size=200))
def test_split_phrase_either_splits_or_raises_the_parsers_error(args):
    from django.utils import timezone

    try:
        _, phrase, text = split_phrase(args, zone_name="Europe/Berlin", now=timezone.now())
    except PhraseError:
        return
    assert args.strip().startswith(phrase.split()[0])
    assert text == text.strip()


@given(text=st.text(max_size=100))
def test_parse_command_never_raises(text):
    for channel in (Channel.TELEGRAM, Channel.SMS):
        command = parse_command(text, channel)
        assert command.name == command.name.lower()


@FUZZ
@given(data=st.text(max_size=80))
def test_any_callback_data_is_refused_without_an_exception(contacts, data):
    reply = acknowledge_press(chat_id=contacts[Channel.TELEGRAM], data=data)

    assert reply.toast and not reply.note


_ids = itertools.count(100_000)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=texts, button=st.booleans())  # fmt: skip
def test_the_whole_webhook_path_processes_any_text(client, settings, fake_telegram, contacts,
                                                   text, button):  # fmt: skip
    settings.TELEGRAM_WEBHOOK_SECRET = "fuzz"
    chat_id = contacts[Channel.TELEGRAM]
    update_id = next(_ids)
    update = (callback_update(chat_id, text[:64], message_text="x", update_id=update_id)
              if button else message_update(chat_id, text or " ", update_id=update_id))  # fmt: skip

    response = client.post("/telegram/webhook/", data=json.dumps(update),
                           content_type="application/json",
                           HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN="fuzz")  # fmt: skip

    assert response.status_code == 200
    row = InboundUpdate.objects.get(channel=Channel.TELEGRAM, external_id=str(update_id))
    assert inbound_process(row.pk) == "processed"
