"""Two Beats at once, as a botched rollout leaves them (the manifests run exactly one):
every periodic job is sent twice as often, by two schedulers that do not know of each
other. What keeps that harmless is in the jobs, not in Beat: the dispatcher and the
check-in planner claim rows with SKIP LOCKED and write rows unique per occurrence or per
local date, a delivery and an inbound update are claimed once by a conditional UPDATE,
a missed dose is one Acknowledgement per delivery.

Observed through their effects, with real worker and Beat processes: each message the
fake Telegram receives once, each lost delivery the reaper hands back sent once, each
unanswered medication reminder marked missed once with one care-team alert, each
patient's update whose task was lost answered once, one check-in per patient and local
date. Every registered periodic job, those added after this test too, runs here every
few seconds from both Beats, and none may fail.
"""

import re
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from channels_app.models import InboxMessage
from outreach.models import CheckIn, CheckInPlan
from patients.models import Channel, Contact, InboundUpdate, Organization, Patient
from scheduling.dispatch import dispatch_due
from scheduling.models import (
    AckAction,
    Acknowledgement,
    AlertStatus,
    CareTeamAlert,
    Delivery,
    DeliveryStatus,
    ScheduledMessage,
)
from scheduling.services import message_schedule
from tests.chaos.conftest import TELEGRAM_QUEUE, schedule_due_messages, status_counts
from tests.fakes.telegram_server import message_update

pytestmark = pytest.mark.chaos

BURST = 300  # due at once: the dispatcher's work
LOST = 30  # dispatched, their tasks lost by the broker: the reaper's
REMINDERS = 8  # sent, unanswered past their time: missed-dose marking's
INBOUND = 15  # patients' messages whose tasks were lost: the inbound sweep's
CHECK_INS = 15  # check-ins falling due: the planner's
JOB_SECONDS = 3  # every periodic job at most this often, from each Beat
ALERT_CHAT = "555000111"
ENV = {
    "SCHEDULER_TICK_SECONDS": 1,
    "DELIVERY_REAPER_SECONDS": 2,
    "DELIVERY_REQUEUE_AFTER_SECONDS": 5,
    "INBOUND_RETRY_AFTER_SECONDS": 5,
    "TELEGRAM_RATE_PER_CHAT_PER_SECOND": 10,  # the alerts all go to one care-team chat
}
SENDING = re.compile(r"Sending due task (.+?) \(")


def patients(organization, count: int, first_chat: int, **fields) -> list[Patient]:
    made = Patient.objects.bulk_create(
        Patient(
            organization=organization,
            name=f"Two beats {first_chat + n}",
            timezone="UTC",
            preferred_channel=Channel.TELEGRAM,
            **fields,
        )
        for n in range(count)
    )
    Contact.objects.bulk_create(
        Contact(
            patient=patient,
            channel=Channel.TELEGRAM,
            address=str(first_chat + n),
            verified_at=timezone.now(),
        )
        for n, patient in enumerate(made)
    )
    return made


def lost_deliveries(organization, broker) -> set[str]:
    """Due now, dispatched here, and their tasks dropped from the broker."""
    chats = patients(organization, LOST, 910_000_000)
    for patient in chats:
        message_schedule(patient=patient, content=f"Lost {patient.pk}", starts_at=timezone.now())
    assert dispatch_due() == LOST
    broker.drain(TELEGRAM_QUEUE)
    return {str(910_000_000 + n) for n in range(LOST)}


def unanswered_reminders(organization) -> None:
    """Medication reminders sent two minutes ago, to be answered within one: overdue."""
    sent_at = timezone.now() - timedelta(minutes=2)
    for patient in patients(organization, REMINDERS, 920_000_000):
        message = message_schedule(
            patient=patient,
            content=f"Pill {patient.pk}",
            starts_at=timezone.now() + timedelta(days=1),
        )
        ScheduledMessage.objects.filter(pk=message.pk).update(ack_timeout_minutes=1)
        Delivery.objects.create(
            message=message,
            channel=Channel.TELEGRAM,
            contact=patient.contacts.get(),
            occurrence_at=sent_at,
            next_attempt_at=sent_at,
            expires_at=sent_at + timedelta(hours=1),
            status=DeliveryStatus.SENT,
            sent_at=sent_at,
            attempts=1,
        )


def unprocessed_updates() -> set[str]:
    """Updates stored a minute ago whose processing task never ran."""
    chats = [str(930_000_000 + n) for n in range(INBOUND)]
    for n, chat in enumerate(chats):
        InboundUpdate.objects.create(
            channel=Channel.TELEGRAM,
            external_id=str(70_000 + n),
            payload=message_update(chat, "hello", update_id=70_000 + n),
        )
    InboundUpdate.objects.update(received_at=timezone.now() - timedelta(minutes=1))
    return set(chats)


def check_in_plans(organization) -> None:
    moment = timezone.now() + timedelta(seconds=20)
    for patient in Patient.objects.bulk_create(
        Patient(
            organization=organization,
            name=f"Check-in {n}",
            timezone="UTC",
            preferred_channel=Channel.WEB,
            onboarding_done=True,
        )
        for n in range(CHECK_INS)
    ):
        CheckInPlan.objects.create(patient=patient, local_time=moment.time(), next_at=moment)


def every_job_often() -> list[str]:
    """Every registered periodic job, at most JOB_SECONDS apart."""
    often, _ = IntervalSchedule.objects.get_or_create(every=JOB_SECONDS, period="seconds")
    names = []
    for task in PeriodicTask.objects.filter(enabled=True):
        if task.interval is None or task.interval.every > JOB_SECONDS:
            task.interval, task.crontab, task.solar, task.clocked = often, None, None, None
            task.expire_seconds = JOB_SECONDS
            task.save()
        names.append(task.name)
    return names


@pytest.mark.timeout(300)
def test_two_beats_at_once_send_each_message_once_and_no_periodic_job_twice(
    chaos_stack, fake_telegram, broker, settings
):
    for name, value in ENV.items():
        setattr(settings, name, value)
    clinic = Organization.objects.create(
        name="Second clinic",
        slug="second-clinic",
        alert_channel=Channel.TELEGRAM,
        alert_address=ALERT_CHAT,
    )
    lost_chats = lost_deliveries(clinic, broker)
    unanswered_reminders(clinic)
    inbound_chats = unprocessed_updates()
    check_in_plans(clinic)
    schedule_due_messages(BURST, due_in=3)
    stack = chaos_stack(**ENV)
    jobs = every_job_often()
    stack.start_worker("a", concurrency=4, extra_queues=(django_settings.OUTREACH_QUEUE,))
    stack.wait_ready("a")
    stack.start_beat("beat1")
    stack.start_beat("beat2")
    started = time.monotonic()

    def all_done() -> bool:
        return (
            Delivery.objects.filter(status=DeliveryStatus.SENT).count()
            >= BURST + LOST + REMINDERS + CHECK_INS
            and CareTeamAlert.objects.filter(status=AlertStatus.SENT).count() >= REMINDERS
            and not InboundUpdate.objects.filter(processed_at__isnull=True).exists()
        )

    deadline = time.monotonic() + 180
    while not all_done() and time.monotonic() < deadline:
        time.sleep(1)
    seconds = time.monotonic() - started
    time.sleep(3 * JOB_SECONDS)  # every job runs again from both Beats over the finished work
    beat_sends = {name: Counter(SENDING.findall(stack.log(name))) for name in ("beat1", "beat2")}
    received = Counter(call.params.get("chat_id") for call in fake_telegram.sent())
    burst_chats = {str(900_000_000 + n) for n in range(BURST)}
    missed = Acknowledgement.objects.filter(action=AckAction.MISSED).count()
    check_ins = Counter(CheckIn.objects.values_list("patient_id", "local_date"))
    check_in_deliveries = Counter(
        Delivery.objects.filter(message__check_in__isnull=False).values_list("status", flat=True)
    )
    print(
        f"\nCHAOS two_beats: seconds={seconds:.1f} statuses={status_counts()} "
        f"provider_sends={sum(received.values())} most_to_one_patient_chat="
        f"{max((received[c] for c in burst_chats | lost_chats | inbound_chats), default=0)} "
        f"alert_chat={received[ALERT_CHAT]} missed={missed} check_ins={len(check_ins)} "
        f"check_in_deliveries={dict(check_in_deliveries)} reaped={stack.reaped()} "
        f"beat_sends={ {b: sum(c.values()) for b, c in beat_sends.items()} }"
    )

    assert all_done(), f"{status_counts()}\n{stack.logs_tail()}"
    # Both Beats really ran every job, more than once: otherwise the test proved less.
    for beat, sends in beat_sends.items():
        assert all(sends[job] >= 2 for job in jobs), (beat, sends, jobs)
    # Dispatcher: each message of the burst once.
    assert all(received[chat] == 1 for chat in burst_chats), received.most_common(3)
    # Reaper: each lost delivery handed back, sent once.
    assert stack.reaped()["reaped_queued"] >= LOST
    assert all(received[chat] == 1 for chat in lost_chats), received.most_common(3)
    # Missed doses: one mark and one alert, sent once, per reminder.
    assert missed == REMINDERS
    assert CareTeamAlert.objects.count() == REMINDERS
    assert received[ALERT_CHAT] == REMINDERS
    # Inbound sweep: each patient's update processed once, answered once.
    assert all(received[chat] == 1 for chat in inbound_chats), received.most_common(3)
    assert set(InboundUpdate.objects.values_list("attempts", flat=True)) == {1}
    # Check-ins: one per patient and local date, delivered once.
    assert len(check_ins) == CHECK_INS and set(check_ins.values()) == {1}
    assert check_in_deliveries == {DeliveryStatus.SENT: CHECK_INS}
    assert InboxMessage.objects.count() == CHECK_INS
    # Nothing else reached the provider, and no job failed.
    assert set(received) == burst_chats | lost_chats | inbound_chats | {ALERT_CHAT}
    assert "raised unexpected" not in stack.log("a"), stack.logs_tail()
