"""Limits on the reminders patients set up themselves (the bot's `schedule` command).

A patient may have at most PATIENT_REMINDERS_MAX of their own reminders active or paused
at once, and none may come more often than every PATIENT_REMINDER_MIN_INTERVAL_MINUTES:
otherwise one patient could fill the queues (and their own phone) with a reminder every
minute. The care team's messages have neither limit.

The interval is the shortest gap between the rule's first SAMPLE occurrences, before
quiet hours move any: enough for every rule the phrases produce and for raw rules, whose
gaps repeat from their first day or week (a rule whose short gaps begin only later,
such as one with BYMONTH and several BYHOUR values, is judged on its first SAMPLE).
"""

from datetime import timedelta
from itertools import islice

from django.conf import settings
from django.core.exceptions import ValidationError

from patients.models import Patient
from scheduling.models import MessageStatus, ScheduledMessage
from scheduling.recurrence import Rule

SAMPLE = 50
HORIZON = timedelta(days=400)  # a year and a bit: a yearly rule shows a gap


class PatientReminderLimit(ValidationError):
    """A limit a patient's own reminder would exceed; `text` names the bot's answer."""

    def __init__(self, text: str, limit: int, message: str) -> None:
        super().__init__(message)
        self.text = text
        self.limit = limit


def check_patient_may_add_reminder(patient: Patient) -> None:
    limit = settings.PATIENT_REMINDERS_MAX
    own = ScheduledMessage.objects.filter(
        patient=patient,
        created_by_patient=True,
        status__in=[MessageStatus.ACTIVE, MessageStatus.PAUSED],
    )
    if own.count() >= limit:
        problem = f"A patient may set up at most {limit} reminders."
        raise PatientReminderLimit("schedule_too_many", limit, problem)


def check_patient_reminder_interval(message: ScheduledMessage) -> None:
    limit = settings.PATIENT_REMINDER_MIN_INTERVAL_MINUTES
    gap = shortest_gap(message)
    if gap is not None and gap < timedelta(minutes=limit):
        problem = f"A patient's own reminder may come at most every {limit} minutes."
        raise PatientReminderLimit("schedule_too_often", limit, problem)


def shortest_gap(message: ScheduledMessage) -> timedelta | None:
    """The shortest time between two of the rule's first occurrences; None for a message
    that comes once."""
    if not message.recurrence:
        return None
    rule = Rule(message.recurrence, starts_at=message.starts_at, zone_name=message.zone_name)
    start = message.starts_at - timedelta(microseconds=1)
    moments = list(islice(rule.between(start, start + HORIZON), SAMPLE))
    gaps = [later - earlier for earlier, later in zip(moments, moments[1:], strict=False)]
    return min(gaps, default=None)
