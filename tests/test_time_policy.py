"""Quiet hours, time zone changes and the preview, through the services and the admin."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from patients.models import Patient
from scheduling.dispatch import dispatch_due
from scheduling.models import DeliveryStatus, ScheduledMessage
from scheduling.occurrences import Occurrence, QuietHours, Schedule, message_preview
from scheduling.services import message_schedule, patient_reschedule
from tests.conftest import from_now

BERLIN = ZoneInfo("Europe/Berlin")


def local(*args) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


@pytest.mark.parametrize(
    ("start", "end", "wall", "released"),
    [(time(22), time(7), local(2025, 5, 1, 23, 30), local(2025, 5, 2, 7)),
     (time(22), time(7), local(2025, 5, 1, 3, 0), local(2025, 5, 1, 7)),
     (time(22), time(7), local(2025, 5, 1, 7, 0), local(2025, 5, 1, 7)),
     (time(22), time(7), local(2025, 5, 1, 21, 59), local(2025, 5, 1, 21, 59)),
     (time(12), time(14), local(2025, 5, 1, 13, 0), local(2025, 5, 1, 14)),
     (time(12), time(14), local(2025, 5, 1, 11, 0), local(2025, 5, 1, 11)),
     # The clocks jump 02:00 -> 03:00 on 2025-03-30; quiet hours ending 02:30 end at 03:00.
     (time(22), time(2, 30), local(2025, 3, 29, 23, 0), local(2025, 3, 30, 3, 0))],
)  # fmt: skip
def test_quiet_hours_release_an_occurrence_at_their_end(start, end, wall, released):
    quiet = QuietHours(start, end, BERLIN)
    assert quiet.release(wall.astimezone(UTC)) == released.astimezone(UTC)


def quiet_patient(make_patient, zone="Europe/Berlin") -> Patient:
    patient = make_patient(zone=zone)
    patient.quiet_hours_start, patient.quiet_hours_end = time(22), time(7)
    patient.save()
    return patient


def test_occurrences_in_quiet_hours_are_moved_and_merged_never_dropped(make_patient):
    patient = quiet_patient(make_patient)
    message = ScheduledMessage(patient=patient, starts_at=local(2025, 5, 1, 20, 0),
                               recurrence="FREQ=HOURLY;INTERVAL=3")  # fmt: skip
    rows = Schedule(message).upcoming(5, after=local(2025, 5, 1, 19, 0))
    assert [(o.at.astimezone(BERLIN).hour, o.send_at.astimezone(BERLIN).strftime("%d %H:%M"))
            for o in rows] == [(20, "01 20:00"), (23, "02 07:00"), (8, "02 08:00"),
                               (11, "02 11:00"), (14, "02 14:00")]  # fmt: skip


def test_a_priority_1_message_may_ignore_quiet_hours_and_others_may_not(make_patient):
    patient = quiet_patient(make_patient)
    tonight = from_now(60)
    urgent = message_schedule(patient=patient, content="urgent", starts_at=tonight, priority=1,
                              ignore_quiet_hours=True)  # fmt: skip
    assert urgent.next_run_at == tonight
    with pytest.raises(ValidationError) as error:
        message_schedule(patient=patient, content="x", starts_at=tonight, ignore_quiet_hours=True)
    assert "priority 1" in str(error.value)


def test_a_delivery_due_in_quiet_hours_keeps_its_occurrence_and_waits_for_the_morning(
    make_patient,
):
    patient = make_patient(zone="UTC")
    now = timezone.now()
    # Quiet from an hour ago to an hour from now, in the patient's zone.
    patient.quiet_hours_start = (now - timedelta(hours=1)).time().replace(second=0, microsecond=0)
    patient.quiet_hours_end = (now + timedelta(hours=1)).time().replace(second=0, microsecond=0)
    patient.save()
    due = from_now(1)
    message = message_schedule(patient=patient, content="x", starts_at=due)

    assert message.next_occurrence_at == due
    assert message.next_run_at > due + timedelta(minutes=55)
    assert dispatch_due(now=due + timedelta(seconds=5)) == 0
    assert dispatch_due(now=message.next_run_at) == 1
    delivery = message.deliveries.get()
    assert (delivery.occurrence_at, delivery.next_attempt_at) == (due, message.next_run_at)
    assert delivery.status == DeliveryStatus.QUEUED


def test_a_new_time_zone_keeps_the_local_wall_clock_time_of_the_patients_messages(
    make_patient,
):
    patient = make_patient(zone="Europe/Berlin")
    start = from_now(86400).astimezone(BERLIN).replace(hour=8, minute=0, second=0)
    daily = message_schedule(patient=patient, content="d", starts_at=start, recurrence="FREQ=DAILY")
    fixed = message_schedule(patient=patient, content="f", starts_at=start,
                             recurrence="FREQ=DAILY", zone_name="Europe/Berlin")  # fmt: skip

    patient.timezone = "America/New_York"
    patient.save()
    assert patient_reschedule(patient, previous_zone="Europe/Berlin") == 2

    daily.refresh_from_db()
    fixed.refresh_from_db()
    new_york = ZoneInfo("America/New_York")
    assert daily.next_run_at.astimezone(new_york).time() == time(8, 0)
    assert daily.next_run_at > timezone.now()
    assert fixed.next_run_at.astimezone(BERLIN).time() == time(8, 0)


def test_the_preview_lists_local_and_utc_times_and_says_what_quiet_hours_moved(make_patient):
    patient = quiet_patient(make_patient)
    message = ScheduledMessage(patient=patient, starts_at=local(2025, 5, 1, 21, 30),
                               recurrence="FREQ=DAILY;BYHOUR=21,23;BYMINUTE=30")  # fmt: skip
    rows = message_preview(message, count=3, after=local(2025, 5, 1, 12, 0))
    assert [(r.local.strftime("%d %H:%M"), r.utc.strftime("%H:%M"),
             r.moved_from_local and r.moved_from_local.strftime("%H:%M")) for r in rows] == [
        ("01 21:30", "19:30", None), ("02 07:00", "05:00", "23:30"),
        ("02 21:30", "19:30", None)]  # fmt: skip


def test_the_first_occurrence_of_a_rule_that_does_not_start_on_its_day_is_the_next_match():
    patient = Patient(timezone="UTC")
    message = ScheduledMessage(
        patient=patient,
        recurrence="FREQ=WEEKLY;BYDAY=MO",
        starts_at=datetime(2025, 4, 15, 9, tzinfo=UTC),
    )  # a Tuesday
    first = Schedule(message).first(not_before=datetime(2025, 4, 1, tzinfo=UTC))
    assert first == Occurrence(datetime(2025, 4, 21, 9, tzinfo=UTC),
                               datetime(2025, 4, 21, 9, tzinfo=UTC))  # fmt: skip


def test_the_admin_shows_the_next_occurrences_and_reschedules_on_a_zone_change(
    demo_client, patient
):
    start = from_now(3600).replace(minute=0, second=0)
    message = message_schedule(patient=patient, content="x", starts_at=start,
                               recurrence="FREQ=DAILY")  # fmt: skip
    page = demo_client.get(reverse("admin:scheduling_scheduledmessage_change", args=[message.pk]))
    shown = page.content.decode()
    assert "Next occurrences" in shown
    assert start.astimezone(patient.zone).strftime("%Y-%m-%d %H:%M") in shown

    form = {"organization": patient.organization_id, "name": patient.name,
            "timezone": "Asia/Tokyo", "language": "en", "preferred_channel": "telegram",
            "quiet_hours_start": "", "quiet_hours_end": "",
            "contacts-TOTAL_FORMS": 0, "contacts-INITIAL_FORMS": 0}  # fmt: skip
    response = demo_client.post(reverse("admin:patients_patient_change", args=[patient.pk]), form)
    assert response.status_code == 302, response.content.decode()[-3000:]
    message.refresh_from_db()
    wall = start.astimezone(BERLIN)
    assert message.next_run_at.astimezone(ZoneInfo("Asia/Tokyo")).time() == wall.time()


def test_the_admin_refuses_half_given_quiet_hours(demo_client, patient):
    form = {"organization": patient.organization_id, "name": patient.name,
            "timezone": "Europe/Berlin", "language": "en", "preferred_channel": "telegram",
            "quiet_hours_start": "22:00", "quiet_hours_end": "",
            "contacts-TOTAL_FORMS": 0, "contacts-INITIAL_FORMS": 0}  # fmt: skip
    response = demo_client.post(reverse("admin:patients_patient_change", args=[patient.pk]), form)
    assert response.status_code == 200
    assert "Give both ends of quiet hours" in response.content.decode()
    patient.refresh_from_db()
    assert patient.quiet_hours_start is None
