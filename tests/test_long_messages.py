"""A long message goes in parts, each a send of its own: its own rate-limit slot from the
bot's and the chat's buckets, recorded once accepted, never sent twice by a retry.

Against the fake Telegram enforcing Telegram's limits strictly (30/s per bot, 1/s per
chat over a sliding second), with the shipped limiter (29/s, 1/s per chat).
"""

import time
from itertools import pairwise

from django.utils import timezone

from channels_app.formatting import split_parts
from channels_app.telegram import MAX_MESSAGE_LENGTH
from scheduling.delivery import deliver, deliver_batch
from scheduling.dispatch import dispatch_due
from scheduling.models import AttemptOutcome, Delivery, DeliveryStatus, MessageKind
from scheduling.services import message_schedule
from tests.conftest import ago
from tests.fakes.telegram_server import Reply

# About 10,000 characters in three paragraphs: three parts, cut between the paragraphs.
LONG = "\n\n".join(f"Paragraph {n}: " + "word " * 660 for n in range(3))


def long_deliveries(make_patient, count: int, *, kind=MessageKind.GENERAL) -> list[Delivery]:
    for _ in range(count):
        message = message_schedule(patient=make_patient(), content=LONG, starts_at=ago(1))
        if kind != MessageKind.GENERAL:
            message.kind = kind
            message.save(update_fields=["kind"])
    dispatch_due()
    return list(Delivery.objects.select_related("contact").order_by("pk"))


def test_the_fixture_message_is_three_parts():
    assert len(LONG) > 9_000
    assert len(split_parts(LONG, MAX_MESSAGE_LENGTH, markup=False)) == 3


def test_a_long_message_reaches_a_chat_part_by_part_each_part_once_inside_its_limit(
    fake_telegram, make_patient
):
    fake_telegram.configure(global_per_second=30, per_chat_per_second=1)
    [delivery] = long_deliveries(make_patient, 1)

    assert deliver(delivery.pk).status == DeliveryStatus.SENT

    calls = fake_telegram.calls()
    assert [c.status for c in calls] == [200, 200, 200], "a part was refused (429?)"
    assert [c.params["text"] for c in calls] == split_parts(LONG, MAX_MESSAGE_LENGTH, markup=False)
    assert all(b.at - a.at >= 1.0 for a, b in pairwise(calls)), "closer than 1/s"
    delivery.refresh_from_db()
    assert delivery.parts_sent == 3 and delivery.attempts == 1
    assert len(delivery.provider_message_id.split(",")) == 3
    assert delivery.attempt_log.get().outcome == AttemptOutcome.SENT


def test_a_retry_goes_on_from_the_first_part_not_accepted(fake_telegram, make_patient):
    [delivery] = long_deliveries(make_patient, 1)
    chat = delivery.contact.address
    fake_telegram.push(Reply(), Reply.server_error(503), chat_id=chat)

    assert deliver(delivery.pk).status == DeliveryStatus.QUEUED
    delivery.refresh_from_db()
    assert delivery.parts_sent == 1 and len(delivery.provider_message_id.split(",")) == 1
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert deliver(delivery.pk).status == DeliveryStatus.SENT

    parts = split_parts(LONG, MAX_MESSAGE_LENGTH, markup=False)
    assert [c.params["text"] for c in fake_telegram.sent()] == parts  # part 1 once
    delivery.refresh_from_db()
    assert delivery.parts_sent == 3 and delivery.attempts == 2
    assert len(delivery.provider_message_id.split(",")) == 3
    outcomes = list(delivery.attempt_log.order_by("number").values_list("outcome", flat=True))
    assert outcomes == [AttemptOutcome.TRANSIENT, AttemptOutcome.SENT]


def test_twenty_long_messages_at_once_stay_inside_the_bots_limit(fake_telegram, make_patient):
    # Before parts had slots of their own, this drew ten 429s from the bot's limit.
    fake_telegram.configure(global_per_second=30, per_chat_per_second=1)
    deliveries = long_deliveries(make_patient, 20)

    outcomes = deliver_batch([d.pk for d in deliveries])

    assert {o.status for o in outcomes} == {DeliveryStatus.SENT}
    calls = fake_telegram.calls()
    assert len(calls) == 60 and {c.status for c in calls} == {200}
    assert not Delivery.objects.exclude(parts_sent=3).exists()


def test_buttons_go_under_the_last_part_only(fake_telegram, make_patient):
    [delivery] = long_deliveries(make_patient, 1, kind=MessageKind.MEDICATION)
    deliver(delivery.pk)
    markups = [c.params.get("reply_markup") for c in fake_telegram.sent()]
    assert markups[:2] == [None, None] and markups[2]


def test_on_whatsapp_too_a_retry_goes_on_from_the_part_not_accepted(settings, make_patient):
    from patients.models import Contact
    from tests.fakes.whatsapp_server import FakeWhatsApp
    from tests.fakes.whatsapp_server import Reply as WhatsAppReply

    fake = FakeWhatsApp().start()
    settings.WHATSAPP_API_BASE_URL = fake.base_url
    settings.WHATSAPP_TOKEN, settings.WHATSAPP_PHONE_NUMBER_ID = "token", "1234567890"
    settings.CHANNEL_SANDBOX = False
    try:
        patient = make_patient(chat_id=None)
        Contact.objects.create(patient=patient, channel="whatsapp", address="+4915112345678",
                               verified_at=timezone.now())  # fmt: skip
        text = "\n\n".join(f"Part {n}: " + "word " * 700 for n in range(2))
        message_schedule(patient=patient, content=text, starts_at=ago(1), channel="whatsapp")
        dispatch_due()
        delivery = Delivery.objects.get()
        fake.push(WhatsAppReply(), WhatsAppReply.graph_error(500, 131000, "Something went wrong"))

        assert deliver(delivery.pk).status == DeliveryStatus.QUEUED
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        # The second part waits for the recipient's slot (Meta: one message per 6 s): the
        # task comes back then, as the worker would run it again.
        outcome = deliver(delivery.pk)
        assert outcome.waiting_for == "rate_limit" and 4 < outcome.retry_in < 7
        time.sleep(outcome.retry_in)
        assert deliver(delivery.pk).status == DeliveryStatus.SENT

        bodies = [c.params["text"]["body"] for c in fake.sent()]
        assert [b.split(":")[0] for b in bodies] == ["Part 0", "Part 1"]
        delivery.refresh_from_db()
        assert delivery.parts_sent == 2 and len(delivery.provider_message_id.split(",")) == 2
    finally:
        fake.stop()
