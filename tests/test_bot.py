"""The Telegram bot through its webhook: real update JSON in, replies at the fake Bot API.

Updates are posted to /telegram/webhook/ as Telegram posts them, then processed by the
function the Celery task calls (conversations.inbound.inbound_process), in the test.
"""

import io
import json
import time
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone

from conversations.inbound import inbound_process, inbound_sweep
from patients.linking import link_token_create, token_hash
from patients.models import Channel, Contact, InboundUpdate, LinkToken, Patient
from patients.texts import say as bot_text
from scheduling.acknowledgements import callback_data
from scheduling.adherence import mark_missed_doses, patient_adherence, send_alert
from scheduling.delivery import deliver
from scheduling.dispatch import dispatch_due
from scheduling.models import (
    AckAction,
    Acknowledgement,
    AlertStatus,
    CareTeamAlert,
    Delivery,
    DeliveryStatus,
    MessageKind,
    MessageStatus,
    ScheduledMessage,
)
from scheduling.services import message_pause, message_schedule
from tests.fakes.telegram_server import callback_update, message_update

SECRET = "webhook-secret_1"
URL = "/telegram/webhook/"


@pytest.fixture
def bot(settings, fake_telegram):
    settings.TELEGRAM_WEBHOOK_SECRET = SECRET
    settings.TELEGRAM_BOT_USERNAME = "fake_bot"
    return fake_telegram


class Updates:
    """Posts updates to the webhook and processes them as the Celery task would."""

    def __init__(self, client) -> None:
        self.client = client
        self.next_id = 5000

    def post(self, update: dict, *, secret: str | None = SECRET):
        if "update_id" not in update:
            self.next_id += 1
            update = {"update_id": self.next_id, **update}
        headers = {} if secret is None else {"HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN": secret}
        return self.client.post(URL, data=json.dumps(update), content_type="application/json",
                                **headers)  # fmt: skip

    def send(self, update: dict) -> None:
        assert self.post(update).status_code == 200
        self.process()

    def process(self) -> list[str]:
        pending = InboundUpdate.objects.filter(processed_at__isnull=True).order_by("pk")
        return [inbound_process(pk) for pk in pending.values_list("pk", flat=True)]


@pytest.fixture
def updates(client, bot):
    return Updates(client)


def chat_of(patient: Patient) -> str:
    return patient.contacts.get(channel=Channel.TELEGRAM).address


def say(updates: Updates, bot, chat_id: str, text: str) -> str:
    """Sends a text from the chat and returns the bot's one reply."""
    before = len(bot.sent(chat_id))
    updates.send(message_update(chat_id, text))
    replies = bot.sent(chat_id)[before:]
    assert len(replies) == 1, [c.params for c in replies]
    return replies[0].params["text"]


def due_reminder(patient: Patient, **changes) -> ScheduledMessage:
    now = timezone.now()
    message = message_schedule(patient=patient, content="Time for your evening dose.",
                               starts_at=now + timedelta(minutes=5))  # fmt: skip
    fields = {"starts_at": now - timedelta(seconds=5), "next_run_at": now - timedelta(seconds=5),
              "next_occurrence_at": now - timedelta(seconds=5), **changes}  # fmt: skip
    ScheduledMessage.objects.filter(pk=message.pk).update(**fields)
    message.refresh_from_db()
    return message


def dispatch_and_deliver() -> list[Delivery]:
    dispatch_due()
    queued = Delivery.objects.filter(status=DeliveryStatus.QUEUED).order_by("pk")
    for delivery_id in queued.values_list("pk", flat=True):
        deliver(delivery_id)
    return list(Delivery.objects.order_by("pk"))


# -- The webhook itself ------------------------------------------------------------------


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", SECRET + "x"])
def test_it_refuses_an_update_without_the_right_secret_with_403(db, updates, bot, secret):
    response = updates.post(message_update(1, "/help"), secret=secret)

    assert response.status_code == 403
    assert not InboundUpdate.objects.exists()


def test_it_refuses_every_update_while_no_secret_is_configured(updates, settings):
    settings.TELEGRAM_WEBHOOK_SECRET = ""

    assert updates.post(message_update(1, "/help"), secret="").status_code == 403


def test_it_answers_400_to_a_body_that_is_no_update(client, bot):
    headers = {"HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN": SECRET}
    for body in ["not json", "[]", '{"update_id": "7"}', '{"message": {}}']:
        response = client.post(URL, data=body, content_type="application/json", **headers)
        assert response.status_code == 400


@pytest.mark.parametrize("depth", [40, 2_000, 100_000])
def test_it_answers_400_to_an_update_nested_too_deeply(client, bot, db, depth):
    # 2,000 levels made json's parser raise RecursionError (a 500); 40 parse, but no
    # Telegram update nests that deep, and storing it would walk every level.
    body = '{"update_id": 9, "message": ' + '{"a": ' * depth + "1" + "}" * depth + "}"
    headers = {"HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN": SECRET}
    response = client.post(URL, data=body, content_type="application/json", **headers)
    assert response.status_code == 400
    assert not InboundUpdate.objects.exists()


def test_it_stores_the_update_and_queues_its_task_after_commit(
    db, updates, broker, settings, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = updates.post(message_update(1, "/help", update_id=77))

    assert response.status_code == 200
    stored = InboundUpdate.objects.get()
    assert (stored.channel, stored.external_id, stored.processed_at) == ("telegram", "77", None)
    assert len(callbacks) == 1
    assert broker.queue_length(settings.INBOUND_QUEUE) == 1


def test_a_redelivered_update_is_stored_once_and_answered_once(updates, bot, patient):
    chat_id = chat_of(patient)
    update = message_update(chat_id, "/help", update_id=99)

    assert updates.post(update).status_code == 200
    assert updates.post(update).status_code == 200
    updates.process()
    updates.process()

    assert InboundUpdate.objects.count() == 1
    assert len(bot.sent(chat_id)) == 1
    assert InboundUpdate.objects.get().payload == {}  # what the patient wrote is not kept


def test_an_update_whose_task_was_lost_is_queued_again_by_the_sweep(
    updates, bot, patient, broker, settings
):
    updates.post(message_update(chat_of(patient), "/help"))  # its on_commit never ran
    fresh = inbound_sweep()
    InboundUpdate.objects.update(received_at=timezone.now() - timedelta(minutes=5))

    stale = inbound_sweep()

    assert (fresh["requeued"], stale["requeued"]) == (0, 1)
    assert broker.queue_length(settings.INBOUND_QUEUE) == 1
    assert updates.process() == ["processed"]
    assert len(bot.sent(chat_of(patient))) == 1
    assert inbound_sweep()["requeued"] == 0


def test_processed_updates_are_kept_for_the_replay_window_then_deleted(
    updates, bot, patient, settings
):
    updates.send(message_update(chat_of(patient), "/help"))
    kept = timezone.now() + timedelta(days=settings.INBOUND_KEEP_DAYS, minutes=1)
    gone = timezone.now() + timedelta(days=settings.INBOUND_REPLAY_KEEP_DAYS, minutes=1)

    assert inbound_sweep(now=kept)["deleted"] == 0
    assert inbound_sweep(now=gone)["deleted"] == 1


def test_set_telegram_webhook_registers_the_url_and_secret(bot, settings):
    settings.PUBLIC_BASE_URL = "https://companion.example.org"

    call_command("set_telegram_webhook", stdout=io.StringIO())

    assert bot.webhook["url"] == "https://companion.example.org/telegram/webhook/"
    assert bot.webhook["secret_token"] == SECRET
    assert json.loads(bot.webhook["allowed_updates"]) == ["message", "callback_query"]


def test_group_chats_get_no_answer(updates, bot, patient):
    updates.send(message_update(-100123, "/help", chat_type="group"))

    assert bot.sent() == []


# -- Linking -----------------------------------------------------------------------------


def test_a_valid_link_connects_the_chat_as_a_verified_contact(updates, bot, make_patient):
    patient = make_patient(chat_id=None)
    link = link_token_create(patient=patient)

    reply = say(updates, bot, "4242", f"/start {link.token}")

    assert "You are connected" in reply
    contact = Contact.objects.at(Channel.TELEGRAM, "4242").get()
    assert contact.patient == patient and contact.verified_at is not None
    token = LinkToken.objects.get(patient=patient)
    assert token.used_at is not None and token.token_hash == token_hash(link.token)
    assert link.token not in str(LinkToken.objects.values())  # only the hash is stored
    assert link.url == f"https://t.me/fake_bot?start={link.token}"
    patient.refresh_from_db()
    assert patient.preferred_channel == Channel.TELEGRAM  # the web inbox was all it had


def test_an_expired_link_is_refused_with_a_clear_answer(updates, bot, make_patient):
    patient = make_patient(chat_id=None)
    link = link_token_create(patient=patient)
    LinkToken.objects.update(expires_at=timezone.now() - timedelta(minutes=1))

    reply = say(updates, bot, "4243", f"/start {link.token}")

    assert "expired" in reply
    assert not Contact.objects.at(Channel.TELEGRAM, "4243").exists()


def test_a_used_link_is_refused_for_another_chat(updates, bot, make_patient):
    patient = make_patient(chat_id=None)
    link = link_token_create(patient=patient)
    say(updates, bot, "5001", f"/start {link.token}")

    reply = say(updates, bot, "5002", f"/start {link.token}")

    assert "already been used" in reply
    assert not Contact.objects.at(Channel.TELEGRAM, "5002").exists()
    assert say(updates, bot, "5001", f"/start {link.token}").startswith("You are already")


def test_an_unknown_link_and_an_unknown_chat_get_an_explanation_without_patient_data(
    updates, bot, patient
):
    invalid = say(updates, bot, "6001", "/start not-a-real-token")
    unknown = say(updates, bot, "6002", "/scheduled")

    assert "not valid" in invalid
    assert unknown == bot_text("unknown_chat", "en")
    assert patient.name not in invalid + unknown


def test_a_new_link_replaces_the_older_unused_one(updates, bot, make_patient):
    patient = make_patient(chat_id=None)
    first = link_token_create(patient=patient)
    link_token_create(patient=patient)

    assert "expired" in say(updates, bot, "6101", f"/start {first.token}")


def test_the_admin_action_shows_a_link_and_an_inline_qr_code(client, bot, patient):
    admin = User.objects.create_superuser("root", "root@example.org", "pw")
    client.force_login(admin)

    response = client.post("/admin/patients/patient/", {
        "action": "create_telegram_links", "_selected_action": [patient.pk]})  # fmt: skip

    page = response.content.decode()
    assert response.status_code == 200
    assert "https://t.me/fake_bot?start=" in page and "<svg" in page
    assert "no-store" in response["Cache-Control"]
    assert LinkToken.objects.filter(patient=patient, created_by=admin).count() == 1


# -- Commands ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "content", "rule_start"),
    [
        ("/schedule daily 08:00 Take your medication", "Take your medication", "FREQ=DAILY"),
        ("/schedule tomorrow 15:00 Take your medicine", "Take your medicine", ""),
        ("/schedule every 2h Drink water", "Drink water", "FREQ="),
        ("/schedule daily 08:00 10 times Stretch", "Stretch", "FREQ=DAILY"),
        ("/schedule@fake_bot weekly on mon,wed at 09:00 Call\nthe clinic", "Call\nthe clinic",
         "FREQ=WEEKLY"),
    ],
)  # fmt: skip
def test_schedule_creates_a_patient_reminder_from_a_phrase_and_text(
    updates, bot, patient, text, content, rule_start
):
    reply = say(updates, bot, chat_of(patient), text)

    message = ScheduledMessage.objects.get(patient=patient)
    assert f"Reminder #{message.pk} saved" in reply
    assert message.content == content
    assert message.recurrence.startswith(rule_start) and bool(message.recurrence) == bool(
        rule_start
    )
    assert message.created_by_patient and message.organization == patient.organization
    assert message.status == MessageStatus.ACTIVE


def test_a_bad_phrase_gets_the_parsers_error_and_an_example(updates, bot, patient):
    reply = say(updates, bot, chat_of(patient), "/schedule dialy 08:00 Take pills")

    assert 'unknown word "dialy"' in reply
    assert "/schedule daily 08:00" in reply
    assert not ScheduledMessage.objects.exists()


def test_a_rule_that_never_occurs_is_refused_at_once(updates, bot, patient):
    """FREQ=DAILY;BYSETPOS=2 cost 15 s of CPU per try before rules were bounded."""
    started = time.process_time()
    reply = say(updates, bot, chat_of(patient), "/schedule RRULE:FREQ=DAILY;BYSETPOS=2 Stretch")

    assert time.process_time() - started < 0.5
    assert "BYSETPOS=2" in reply
    assert not ScheduledMessage.objects.exists()


def test_a_phrase_without_text_asks_for_the_text(updates, bot, patient):
    reply = say(updates, bot, chat_of(patient), "/schedule daily 08:00")

    assert "add the reminder text" in reply
    assert not ScheduledMessage.objects.exists()


def test_scheduled_lists_the_patients_own_active_reminders_with_local_times(
    updates, bot, make_patient
):
    patient, other = make_patient(zone="America/New_York"), make_patient()
    say(updates, bot, chat_of(patient), "/schedule daily 08:00 Take your medication")
    say(updates, bot, chat_of(other), "/schedule daily 09:00 Someone else's secret")
    mine = ScheduledMessage.objects.get(patient=patient)

    reply = say(updates, bot, chat_of(patient), "/scheduled")

    assert f"#{mine.pk} daily at 08:00" in reply and "08:00: Take your medication" in reply
    assert "secret" not in reply


def test_cancel_schedule_cancels_only_the_patients_own_reminder(updates, bot, make_patient):
    patient, other = make_patient(), make_patient()
    say(updates, bot, chat_of(patient), "/schedule daily 08:00 Mine")
    say(updates, bot, chat_of(other), "/schedule daily 08:00 Theirs")
    mine = ScheduledMessage.objects.get(patient=patient)
    theirs = ScheduledMessage.objects.get(patient=other)

    refused = say(updates, bot, chat_of(patient), f"/cancel_schedule {theirs.pk}")
    missing = say(updates, bot, chat_of(patient), "/cancel_schedule 99999999")
    done = say(updates, bot, chat_of(patient), f"/cancel_schedule {mine.pk}")

    assert refused == missing.replace("99999999", str(theirs.pk))
    assert done == f"Reminder #{mine.pk} is cancelled."
    theirs.refresh_from_db()
    mine.refresh_from_db()
    assert theirs.status == MessageStatus.ACTIVE
    assert mine.status == MessageStatus.CANCELLED


def test_help_answers_in_the_patients_language_and_falls_back_to_english(
    updates, bot, make_patient
):
    german, other = make_patient(), make_patient()
    Patient.objects.filter(pk=german.pk).update(language="de")
    Patient.objects.filter(pk=other.pk).update(language="pt-BR")

    assert say(updates, bot, chat_of(german), "/help").startswith("Was Sie senden können")
    assert say(updates, bot, chat_of(other), "/help").startswith("What you can send")


def test_free_text_says_it_is_not_read_by_the_care_team(updates, bot, patient):
    reply = say(updates, bot, chat_of(patient), "I feel dizzy")

    assert "not read by your care team" in reply


def test_any_message_updates_last_interaction(updates, bot, patient):
    say(updates, bot, chat_of(patient), "hello")

    patient.refresh_from_db()
    assert patient.last_interaction_at is not None


def test_stop_pauses_everything_and_a_due_reminder_is_not_sent(updates, bot, patient):
    chat_id = chat_of(patient)
    message = due_reminder(patient)

    reply = say(updates, bot, chat_id, "/stop")
    deliveries = dispatch_and_deliver()

    assert "no more messages" in reply
    patient.refresh_from_db()
    message.refresh_from_db()
    assert patient.opted_out_at is not None
    assert message.status == MessageStatus.PAUSED
    assert deliveries == []
    assert [c.params["text"] for c in bot.sent(chat_id)] == [reply]


def test_start_after_stop_resumes_only_what_stop_paused(updates, bot, patient):
    chat_id = chat_of(patient)
    by_care_team = due_reminder(patient)
    message_pause(by_care_team, reason="paused by the care team")
    by_stop = due_reminder(patient)
    say(updates, bot, chat_id, "/stop")

    reply = say(updates, bot, chat_id, "/start")

    patient.refresh_from_db()
    by_stop.refresh_from_db()
    by_care_team.refresh_from_db()
    assert patient.opted_out_at is None
    assert by_stop.status == MessageStatus.ACTIVE and by_stop.status_reason == ""
    assert by_care_team.status == MessageStatus.PAUSED
    assert "1 reminders resumed" in reply


def test_schedule_while_opted_out_asks_for_start_first(updates, bot, patient):
    say(updates, bot, chat_of(patient), "/stop")

    reply = say(updates, bot, chat_of(patient), "/schedule daily 08:00 Pills")

    assert "Send /start" in reply
    assert not ScheduledMessage.objects.exists()


# -- Buttons on medication reminders -----------------------------------------------------


def medication_reminder(patient: Patient, **changes) -> Delivery:
    message = due_reminder(patient, kind=MessageKind.MEDICATION, **changes)
    dispatch_and_deliver()
    (delivery,) = Delivery.objects.filter(message=message)
    assert delivery.status == DeliveryStatus.SENT
    return delivery


def test_a_medication_reminder_carries_taken_snooze_and_skip_buttons(bot, patient):
    delivery = medication_reminder(patient)

    (call,) = bot.sent(chat_of(patient))
    keyboard = json.loads(call.params["reply_markup"])["inline_keyboard"]
    labels = [button["text"] for button in keyboard[0]]
    assert labels == ["Taken", "Snooze 10 min", "Skip"]
    assert keyboard[0][0]["callback_data"].startswith(f"ack:{delivery.pk}:t:")


def press(updates, bot, patient, delivery, action, *, chat_id=None):
    chat = chat_id or chat_of(patient)
    data = callback_data(delivery.pk, action, chat_of(patient))
    updates.send(callback_update(chat, data, message_text=delivery.message.content))


def test_taken_records_the_acknowledgement_and_shows_the_choice(updates, bot, patient):
    delivery = medication_reminder(patient)

    press(updates, bot, patient, delivery, AckAction.TAKEN)
    press(updates, bot, patient, delivery, AckAction.SKIPPED)  # a second answer

    ack = Acknowledgement.objects.get(delivery=delivery)
    assert ack.action == AckAction.TAKEN and ack.channel == Channel.TELEGRAM
    (edit,) = bot.calls("editMessageText")
    assert edit.params["text"].startswith("Time for your evening dose.\n\nTaken at ")
    assert "reply_markup" not in edit.params  # the buttons are gone
    answers = bot.calls("answerCallbackQuery")
    assert len(answers) == 2 and "already recorded: taken" in answers[1].params["text"]


def test_snooze_sends_the_reminder_once_more_later(updates, bot, patient):
    delivery = medication_reminder(patient, ack_timeout_minutes=30)
    before = timezone.now()

    press(updates, bot, patient, delivery, AckAction.SNOOZED)
    press(updates, bot, patient, delivery, AckAction.SNOOZED)  # a double press

    ack = Acknowledgement.objects.get(delivery=delivery)
    repeat = ack.snooze_message
    assert ack.action == AckAction.SNOOZED
    assert ScheduledMessage.objects.filter(metadata__snooze_of_delivery=delivery.pk).count() == 1
    assert timedelta(minutes=9) < repeat.next_run_at - before <= timedelta(minutes=11)
    assert (repeat.kind, repeat.ack_timeout_minutes, repeat.recurrence) == ("medication", 30, "")
    assert "I will remind you again at" in bot.calls("editMessageText")[0].params["text"]
    # Ten minutes later:
    moment = timezone.now() - timedelta(seconds=1)
    ScheduledMessage.objects.filter(pk=repeat.pk).update(
        starts_at=moment, next_run_at=moment, next_occurrence_at=moment)  # fmt: skip
    dispatch_and_deliver()
    dispatch_and_deliver()
    sent = bot.sent(chat_of(patient))
    assert [c.params["text"] for c in sent] == ["Time for your evening dose."] * 2
    assert json.loads(sent[1].params["reply_markup"])  # the repeat can be answered too


def test_a_forged_or_foreign_button_press_is_refused(updates, bot, make_patient):
    patient, intruder = make_patient(), make_patient()
    delivery = medication_reminder(patient)

    forged = f"ack:{delivery.pk}:t:AAAAAAAAAAAAAAAA"
    updates.send(callback_update(chat_of(intruder), forged, message_text="x"))
    # A genuine button, replayed from another chat: signed for the patient's chat only.
    press(updates, bot, patient, delivery, AckAction.TAKEN, chat_id=chat_of(intruder))

    assert not Acknowledgement.objects.exists()
    answers = [c.params["text"] for c in bot.calls("answerCallbackQuery")]
    assert answers == ["This button is no longer valid."] * 2
    assert bot.calls("editMessageText") == []


# -- Missed doses ------------------------------------------------------------------------


def test_an_unanswered_reminder_is_marked_missed_and_the_care_team_alerted(bot, patient):
    organization = patient.organization
    organization.alert_channel, organization.alert_address = Channel.TELEGRAM, "909090"
    organization.save()
    delivery = medication_reminder(patient, ack_timeout_minutes=15)

    assert mark_missed_doses(now=timezone.now() + timedelta(minutes=14)) == 0
    assert mark_missed_doses(now=timezone.now() + timedelta(minutes=16)) == 1
    assert mark_missed_doses(now=timezone.now() + timedelta(minutes=17)) == 0

    assert Acknowledgement.objects.get(delivery=delivery).action == AckAction.MISSED
    alert = CareTeamAlert.objects.get()
    # The reminder took a slot of the bot's shared limit moments ago; the alert's may be
    # a few ms off (send_alert then answers the wait and sends nothing).
    time.sleep(1 / django_settings.TELEGRAM_RATE_PER_SECOND)
    assert send_alert(alert.pk) is None
    alert.refresh_from_db()
    assert alert.status == AlertStatus.SENT
    (note,) = bot.sent("909090")
    assert (
        f"patient #{patient.pk} did not answer reminder #{delivery.message_id}"
        in (note.params["text"])
    )
    assert patient.name not in note.params["text"]
    week, month = patient_adherence(patient)
    assert (week.days, week.taken, week.missed, week.skipped) == (7, 0, 1, 0)
    assert (month.days, month.missed) == (30, 1)


def test_a_reminder_answered_in_time_is_not_missed(updates, bot, patient):
    delivery = medication_reminder(patient, ack_timeout_minutes=15)
    press(updates, bot, patient, delivery, AckAction.TAKEN)

    assert mark_missed_doses(now=timezone.now() + timedelta(hours=1)) == 0
    assert patient_adherence(patient)[0].taken == 1


def test_reminders_without_a_timeout_are_never_missed_and_no_alert_without_a_contact(
    bot, make_patient
):
    patient = make_patient()
    medication_reminder(patient)
    other = make_patient()
    medication_reminder(other, ack_timeout_minutes=1)

    assert mark_missed_doses(now=timezone.now() + timedelta(hours=1)) == 1
    assert not CareTeamAlert.objects.exists()


def test_the_admin_shows_adherence_on_the_patient_page(client, bot, patient):
    client.force_login(User.objects.create_superuser("root", "root@example.org", "pw"))
    medication_reminder(patient, ack_timeout_minutes=1)
    mark_missed_doses(now=timezone.now() + timedelta(minutes=5))

    page = client.get(f"/admin/patients/patient/{patient.pk}/change/").content.decode()

    assert "last 7 days: 0 taken, 1 missed, 0 skipped" in page


@pytest.mark.e2e
def test_a_webhook_update_is_answered_by_a_real_celery_worker(
    client, celery_stack, fake_telegram, settings, patient
):
    settings.TELEGRAM_WEBHOOK_SECRET = SECRET
    chat_id = chat_of(patient)

    response = Updates(client).post(message_update(chat_id, "/schedule every 2h Drink water"))

    assert response.status_code == 200
    assert fake_telegram.wait_for(lambda: fake_telegram.sent(chat_id), timeout=30), (
        celery_stack.log("worker")[-3000:]
    )
    assert ScheduledMessage.objects.get(patient=patient).content == "Drink water"
    assert InboundUpdate.objects.get().processed_at is not None
