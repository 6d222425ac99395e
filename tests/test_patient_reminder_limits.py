"""Reminders patients set up themselves (/schedule): at most PATIENT_REMINDERS_MAX active
ones, and none more often than every PATIENT_REMINDER_MIN_INTERVAL_MINUTES. The bot says
which limit, with its number; the care team's own messages are not limited by these."""

from datetime import timedelta

import pytest
from django.utils import timezone

from conversations.bot.commands import handle_text
from patients.models import Channel
from scheduling.models import MessageStatus, ScheduledMessage
from scheduling.services import message_cancel, message_schedule


def send(patient, text: str) -> str:
    chat = patient.contacts.get(channel=Channel.TELEGRAM).address
    return handle_text(channel=Channel.TELEGRAM, address=chat, text=text) or ""


@pytest.mark.parametrize(
    "phrase",
    [
        "every 30m",
        "every 59 minutes",
        "RRULE:FREQ=DAILY;BYHOUR=8;BYMINUTE=0,1",
        "RRULE:FREQ=WEEKLY;BYDAY=MO;BYHOUR=9,10;BYMINUTE=0,30",
        '{"type": "custom", "minutes": 5}',
    ],
)
def test_a_patient_reminder_more_often_than_the_minimum_is_refused(patient, phrase):
    reply = send(patient, f"/schedule {phrase} Drink water")

    assert "60 minutes" in reply, reply
    assert not ScheduledMessage.objects.exists()


@pytest.mark.parametrize("phrase", ["every 1h", "every 2h", "daily at 08:00", "in 10 minutes"])
def test_a_patient_reminder_at_the_minimum_or_once_is_accepted(patient, phrase):
    reply = send(patient, f"/schedule {phrase} Drink water")

    assert reply.startswith("Reminder #"), reply


def test_the_minimum_interval_is_a_setting(settings, patient):
    settings.PATIENT_REMINDER_MIN_INTERVAL_MINUTES = 180

    reply = send(patient, "/schedule every 2h Drink water")

    assert "180 minutes" in reply and not ScheduledMessage.objects.exists()


def test_a_patient_may_have_at_most_the_maximum_of_active_reminders(settings, patient):
    settings.PATIENT_REMINDERS_MAX = 2
    for hour in (8, 9):
        assert send(patient, f"/schedule daily {hour}:00 Stretch").startswith("Reminder #")

    reply = send(patient, "/schedule daily 10:00 Stretch")

    assert "2 reminders" in reply and "/cancel_schedule" in reply, reply
    assert ScheduledMessage.objects.count() == 2


def test_cancelled_reminders_and_the_care_teams_messages_do_not_count(settings, patient):
    settings.PATIENT_REMINDERS_MAX = 1
    send(patient, "/schedule daily 08:00 Stretch")
    message_cancel(ScheduledMessage.objects.get(), reason="test")
    message_schedule(
        patient=patient,
        content="From the clinic",
        starts_at=timezone.now() + timedelta(hours=1),
        recurrence="FREQ=MINUTELY;INTERVAL=5",
    )

    reply = send(patient, "/schedule daily 09:00 Stretch")

    assert reply.startswith("Reminder #"), reply
    active = ScheduledMessage.objects.filter(status=MessageStatus.ACTIVE)
    assert active.filter(created_by_patient=True).count() == 1


def test_the_limit_is_said_in_the_patients_language(settings, patient):
    settings.PATIENT_REMINDERS_MAX = 1
    patient.language = "de"
    patient.save()
    send(patient, "/schedule daily 08:00 Dehnen")

    reply = send(patient, "/schedule daily 09:00 Dehnen")

    assert "1 Erinnerungen" in reply or "1 Erinnerung" in reply, reply
