"""Daily check-ins: planned from an index, once per patient and local date, written by the
language model (a fake OpenAI-compatible server over HTTP, through the real `openai`
client) with the weather (a fake Open-Meteo), and the fallback template whenever the
model fails, is too slow or writes something a patient must not get."""

import re
import threading
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from outreach import planning, writing
from outreach.models import CheckIn, CheckInPlan, CheckInSource, CheckInStatus, CompanionPersona
from outreach.moments import next_check_in
from outreach.planning import plan_check_ins
from outreach.plans import plan_check_ins_for
from patients.models import Contact, Patient
from scheduling.models import AckAction, MessageKind
from tests.fakes.llm_server import Reply

FALLBACK_START = "Hello Patient"  # the built-in English check-in template


def local_time_in(minutes: float, zone: str) -> time:
    return (timezone.now() + timedelta(minutes=minutes)).astimezone(ZoneInfo(zone)).time()


def onboarded(make_patient, **kwargs):
    patient = make_patient(**kwargs)
    patient.onboarding_done = True
    patient.save()
    return patient


def due_check_in(make_patient, *, minutes: float = 1, **plan_fields) -> CheckIn:
    """A patient whose check-in falls `minutes` from now, planned; returns its row."""
    patient = onboarded(make_patient)
    plan_check_ins_for(patient, local_time=local_time_in(minutes, patient.timezone), **plan_fields)
    assert plan_check_ins() == 1
    return CheckIn.objects.get(patient=patient)


def test_a_check_in_is_written_by_the_model_and_scheduled_at_its_moment(
    make_patient, fake_llm, broker, django_capture_on_commit_callbacks
):
    fake_llm.text = "Good morning! How did you sleep?"
    with django_capture_on_commit_callbacks(execute=True):
        check_in = due_check_in(make_patient)
    # The writing task went to the outreach queue, not to a delivery queue.
    assert broker.queue_length("outreach") == 1
    assert broker.queue_length("deliver.telegram") == 0

    assert writing.write_check_in(check_in.pk) == CheckInSource.LLM
    check_in.refresh_from_db()
    message = check_in.message
    assert (check_in.status, check_in.source, check_in.fallback_reason) == (
        CheckInStatus.SCHEDULED,
        CheckInSource.LLM,
        "",
    )
    assert message.content == "Good morning! How did you sleep?"
    assert message.kind == MessageKind.CHECK_IN and message.starts_at == check_in.due_at
    assert (check_in.model, check_in.prompt_tokens, check_in.completion_tokens) == (
        "companion-test",
        42,
        17,
    )
    assert check_in.latency_ms is not None
    # The delivery window ends with the check-in's window.
    assert message.starts_at + timedelta(seconds=message.delivery_window_seconds) == (
        check_in.window_ends_at
    )
    # Written once: a second task for it changes nothing.
    assert writing.write_check_in(check_in.pk) == "already done"
    assert len(fake_llm.calls()) == 1


def test_by_default_only_the_first_name_language_weather_and_persona_leave(
    make_patient, fake_llm, fake_weather
):
    patient = onboarded(make_patient)
    patient.name, patient.language = "Anna Schmidt", "de"
    patient.save()
    CompanionPersona.objects.create(
        organization=patient.organization,
        companion_name="Lotte",
        support_style="brief and practical",
    )
    plan_check_ins_for(
        patient,
        local_time=local_time_in(1, patient.timezone),
        latitude="52.52437",
        longitude="13.41053",
    )
    plan_check_ins()
    writing.write_check_in(CheckIn.objects.get().pk)

    [call] = fake_llm.calls()
    sent = " ".join(m["content"] for m in call.body["messages"])
    assert "Anna" in sent and "Lotte" in sent and "brief and practical" in sent
    assert "German" in sent and "rain, 12 °C" in sent
    contact = patient.contacts.get()
    for private in ("Schmidt", contact.address, "52.52", "13.41"):
        assert private not in sent, private
    assert not re.search(rf"\b{patient.pk}\b", sent), "the patient's id left"
    # Only rounded coordinates went to the weather service.
    [weather_call] = fake_weather.calls()
    assert (weather_call.query["latitude"], weather_call.query["longitude"]) == ("52.5", "13.4")
    check_in = CheckIn.objects.get()
    assert check_in.with_weather and not check_in.with_context


def test_an_organization_that_shares_context_sends_adherence_counts_not_texts(
    make_patient, fake_llm
):
    from scheduling.models import Acknowledgement, Delivery
    from scheduling.services import message_schedule

    patient = onboarded(make_patient)
    CompanionPersona.objects.create(organization=patient.organization, share_context_with_llm=True)
    reminder = message_schedule(
        patient=patient,
        content="Take the blue pill",
        starts_at=timezone.now() + timedelta(hours=1),
        kind=MessageKind.MEDICATION,
    )
    for n, action in enumerate([AckAction.TAKEN, AckAction.TAKEN, AckAction.MISSED]):
        delivery = Delivery.objects.create(
            message=reminder,
            occurrence_at=timezone.now() - timedelta(days=n + 1),
            channel="telegram",
            next_attempt_at=timezone.now(),
            expires_at=timezone.now(),
        )
        Acknowledgement.objects.create(delivery=delivery, action=action, at=timezone.now())
    plan_check_ins_for(patient, local_time=local_time_in(1, patient.timezone))
    plan_check_ins()
    writing.write_check_in(CheckIn.objects.get().pk)

    sent = " ".join(m["content"] for m in fake_llm.calls()[0].body["messages"])
    assert "confirmed 2 of 3 medication reminders" in sent
    assert "blue pill" not in sent
    assert CheckIn.objects.get().with_context


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(delay=3), "timeout"),
        (Reply.error(500), "http_500"),
        (Reply.rate_limited(), "rate_limited"),
        (Reply.garbage(), "bad_answer"),
        (Reply.without_choices(), "bad_answer"),
        (Reply(text="   "), "empty"),
        (Reply(text="Hi! " * 150), "too_long"),
        (Reply(text="Hi <b>Anna</b>, how are you?"), "html"),
        (Reply(text="Hi Anna, see https://example.com today"), "link"),
        (Reply(text="Hi Anna, how are", finish_reason="length"), "cut_off"),
        (Reply(text="", finish_reason="content_filter"), "refused"),
    ],
)
def test_whatever_goes_wrong_with_the_model_the_fallback_is_sent_with_its_reason(
    make_patient, fake_llm, reply, reason
):
    check_in = due_check_in(make_patient)
    fake_llm.push(reply)

    assert writing.write_check_in(check_in.pk) == CheckInSource.FALLBACK
    check_in.refresh_from_db()
    assert (check_in.status, check_in.source, check_in.fallback_reason) == (
        CheckInStatus.SCHEDULED,
        CheckInSource.FALLBACK,
        reason,
    )
    assert check_in.message.content.startswith(FALLBACK_START)
    assert check_in.message.metadata["written_by"] == "fallback"


def test_without_a_model_configured_every_check_in_is_the_fallback(make_patient, settings):
    settings.LLM_BASE_URL = ""
    check_in = due_check_in(make_patient)
    assert writing.write_check_in(check_in.pk) == CheckInSource.FALLBACK
    check_in.refresh_from_db()
    assert check_in.fallback_reason == "not_configured"


def test_weather_down_means_a_check_in_without_weather_and_one_call_per_place_an_hour(
    make_patient, fake_llm, fake_weather
):
    fake_weather.down = True
    first = due_check_in(make_patient, latitude="48.137", longitude="11.575")
    assert writing.write_check_in(first.pk) == CheckInSource.LLM
    first.refresh_from_db()
    assert not first.with_weather
    assert "weather" not in fake_llm.calls()[0].body["messages"][1]["content"]

    fake_weather.down = False
    # Two neighbours in the same rounded place: one call to the weather service.
    for latitude in ("48.14", "48.1449"):
        check_in = due_check_in(make_patient, latitude=latitude, longitude="11.58")
        writing.write_check_in(check_in.pk)
        check_in.refresh_from_db()
        assert check_in.with_weather
    assert len([c for c in fake_weather.calls() if c.status == 200]) == 1


def test_a_check_in_not_written_by_its_moment_plus_the_grace_gets_the_fallback_once(
    make_patient, fake_llm, settings
):
    check_in = due_check_in(make_patient)
    later = check_in.due_at + timedelta(seconds=settings.CHECK_IN_GRACE_SECONDS + 1)
    assert writing.finish_late_check_ins(later) == 1
    check_in.refresh_from_db()
    assert (check_in.source, check_in.fallback_reason) == (CheckInSource.FALLBACK, "llm_too_slow")
    # The writer coming in afterwards finds it done, and writes nothing more.
    assert writing.write_check_in(check_in.pk) == "already done"
    assert fake_llm.calls() == []


def test_once_per_local_day_however_often_the_planner_runs(make_patient, fake_llm):
    check_in = due_check_in(make_patient)
    for _ in range(3):
        assert plan_check_ins() == 0
    plan = CheckInPlan.objects.get()
    assert plan.last_local_date == check_in.local_date
    assert plan.next_at == check_in.due_at + timedelta(days=1) or plan.next_at > check_in.due_at


@pytest.mark.django_db(transaction=True)
def test_two_planners_at_once_start_one_check_in_per_patient(make_patient, broker):
    patients = [onboarded(make_patient) for _ in range(40)]
    for patient in patients:
        plan_check_ins_for(patient, local_time=local_time_in(1, patient.timezone))
    barrier = threading.Barrier(2)
    started = []

    def run() -> None:
        try:
            barrier.wait()
            started.append(plan_check_ins())
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(started) == 40
    assert CheckIn.objects.count() == 40
    assert broker.queue_length("outreach") == 40


def test_a_dst_gap_moves_the_check_in_to_the_first_moment_after_it(make_patient):
    patient = make_patient(zone="Europe/Berlin")
    plan = CheckInPlan(patient=patient, local_time=time(2, 30))
    # 2027-03-28: clocks go from 02:00 to 03:00 in Berlin.
    day, moment = next_check_in(
        plan, patient, after=datetime(2027, 3, 27, 23, 0, tzinfo=ZoneInfo("UTC"))
    )
    assert day == date(2027, 3, 28)
    assert moment.astimezone(ZoneInfo("Europe/Berlin")).time() == time(3, 0)
    # 2027-10-31: 02:30 happens twice; the first is taken, once.
    day, moment = next_check_in(
        plan, patient, after=datetime(2027, 10, 30, 23, 0, tzinfo=ZoneInfo("UTC"))
    )
    assert moment == datetime(2027, 10, 31, 0, 30, tzinfo=ZoneInfo("UTC"))  # 02:30 CEST
    plan.last_local_date = day
    _, following = next_check_in(plan, patient, after=moment)
    assert following.date() == date(2027, 11, 1)


def test_a_zone_change_after_todays_check_in_does_not_bring_today_back(make_patient):
    patient = onboarded(make_patient, zone="Asia/Tokyo")
    plan_check_ins_for(patient, local_time=local_time_in(1, "Asia/Tokyo"))
    assert plan_check_ins() == 1
    served = CheckIn.objects.get(patient=patient)
    # The patient moves to New York, where the wall clock is 14 hours behind: the same
    # local time comes round again "today" there, but that date is not served twice.
    patient.timezone = "America/New_York"
    patient.save()
    plan = CheckInPlan.objects.get(patient=patient)
    plan.local_time = local_time_in(1, "America/New_York")
    plan.save()
    plan.refresh_from_db()
    assert plan.next_at > served.due_at + timedelta(hours=12)
    assert plan_check_ins() == 0
    assert CheckIn.objects.filter(patient=patient).count() == 1


def test_a_patient_who_blocked_us_everywhere_stops_getting_check_ins_with_the_reason(
    make_patient,
):
    patient = onboarded(make_patient)
    Contact.objects.filter(patient=patient).update(blocked_at=timezone.now())
    plan_check_ins_for(patient, local_time=local_time_in(1, patient.timezone))
    assert plan_check_ins() == 0
    plan = CheckInPlan.objects.get()
    assert not plan.enabled and "blocked" in plan.stopped_reason
    assert plan.next_at is None
    assert not CheckIn.objects.exists()


def test_patients_not_onboarded_or_opted_out_are_skipped_and_moved_on(make_patient):
    waiting, gone = make_patient(), onboarded(make_patient)
    gone.opted_out_at = timezone.now()
    gone.save()
    for patient in (waiting, gone):
        plan_check_ins_for(patient, local_time=local_time_in(1, patient.timezone))
    assert plan_check_ins() == 0
    assert not CheckIn.objects.exists()
    # Moved on to tomorrow: the next tick does not read them again.
    assert not planning.due_plans(timezone.now(), 10).exists()


def test_an_idle_planner_tick_reads_one_index_and_writes_nothing(organization):
    later = timezone.now() + timedelta(hours=5)
    patients = Patient.objects.bulk_create(
        Patient(organization=organization, name=f"P {n}", onboarding_done=True) for n in range(2000)
    )
    CheckInPlan.objects.bulk_create(CheckInPlan(patient=p, next_at=later) for p in patients)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE outreach_checkinplan")
    with CaptureQueriesContext(connection) as queries:
        assert plan_check_ins() == 0
    statements = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) <= 2 and all(s.startswith("SELECT") for s in statements), statements
    sql, params = planning.due_plans(timezone.now(), 500).query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "check_in_due_idx" in plan, plan


def test_a_new_patient_gets_check_ins_when_the_organization_starts_them_for_new_patients(
    organization, make_patient
):
    CompanionPersona.objects.create(organization=organization, check_ins_for_new_patients=True)
    patient = make_patient()
    plan = CheckInPlan.objects.get(patient=patient)
    assert plan.enabled and plan.next_at is not None


def test_the_sandbox_labels_a_check_in_written_by_the_fallback(demo_client, settings, make_patient):
    from channels_app.models import SandboxMessage
    from patients.models import Organization
    from scheduling.dispatch import dispatch_due
    from scheduling.models import Delivery

    settings.CHANNEL_SANDBOX, settings.LLM_BASE_URL = True, ""
    clinic = Organization.objects.get(slug="clinic-a")  # the demo user's other clinic
    patient = onboarded(make_patient, org=clinic)
    plan_check_ins_for(patient, local_time=local_time_in(-1, patient.timezone))
    plan_check_ins()
    writing.write_check_in(CheckIn.objects.get().pk)
    dispatch_due()
    delivery = Delivery.objects.get(message__patient=patient)
    SandboxMessage.objects.create(
        channel="telegram", address="1", delivery_id=delivery.pk, text=delivery.message.content
    )
    page = demo_client.get("/sandbox/")
    assert b"companion (fallback template)" in page.content


def test_the_demo_starts_check_ins_due_within_two_minutes(db, settings):
    from django.core.management import call_command

    settings.DEBUG = True  # the demo exists only in development (make run)

    call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    plans = list(CheckInPlan.objects.all())
    assert len(plans) == 3
    soon = timezone.now() + timedelta(minutes=2)
    assert all(plan.enabled and timezone.now() < plan.next_at <= soon for plan in plans)
    assert CompanionPersona.objects.count() == 1
