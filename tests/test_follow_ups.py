"""Follow-ups for patients who have gone quiet: found from an index, held back by the
weekly cap, the cooldown and quiet hours, written by the (fake) language model or the
fallback, switched off by the patient alone, answered or not; and planned by hand from
the admin, the API and the web UI."""

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from conversations.bot.commands import handle_text
from outreach.follow_ups import (
    follow_up_schedule,
    note_patient_wrote,
    plan_follow_ups,
    response_rate,
    write_follow_up,
)
from outreach.models import (
    CheckIn,
    CheckInStatus,
    FollowUp,
    FollowUpKind,
    FollowUpState,
    FollowUpStatus,
)
from patients.models import Patient
from patients.provisioning import provider_create
from scheduling.models import MessageKind


def quiet_patient(make_patient, *, days: float = 3, **fields) -> Patient:
    patient = make_patient()
    Patient.objects.filter(pk=patient.pk).update(
        onboarding_done=True, last_interaction_at=timezone.now() - timedelta(days=days), **fields
    )
    patient.refresh_from_db()
    FollowUpState.objects.filter(patient=patient).update(next_at=timezone.now())
    return patient


def test_a_patient_quiet_for_two_days_gets_one_follow_up_written_by_the_model(
    make_patient, fake_llm, broker, django_capture_on_commit_callbacks
):
    fake_llm.text = "Hi! We have not heard from you in a while. How are you doing?"
    patient = quiet_patient(make_patient)
    with django_capture_on_commit_callbacks(execute=True):
        assert plan_follow_ups() == 1
    assert broker.queue_length("outreach") == 1
    follow_up = FollowUp.objects.get()
    assert (follow_up.kind, follow_up.status) == (FollowUpKind.AUTOMATIC, FollowUpStatus.WRITING)

    assert write_follow_up(follow_up.pk) == "llm"
    follow_up.refresh_from_db()
    assert follow_up.status == FollowUpStatus.SCHEDULED
    assert follow_up.message.kind == MessageKind.FOLLOW_UP
    assert follow_up.message.content.startswith("Hi! We have not heard")
    assert "first name" in follow_up.context_used and "days quiet" in follow_up.context_used
    prompt = " ".join(m["content"] for m in fake_llm.calls()[0].body["messages"])
    assert "3 days" in prompt and patient.name.split()[0] in prompt
    # Looked at again only after another quiet period: the next ticks start nothing.
    state = FollowUpState.objects.get(patient=patient)
    assert state.next_at > timezone.now() + timedelta(hours=47)
    assert plan_follow_ups() == 0


def test_without_a_model_the_follow_up_is_the_template(make_patient, settings):
    settings.LLM_BASE_URL = ""
    quiet_patient(make_patient)
    plan_follow_ups()
    follow_up = FollowUp.objects.get()
    assert write_follow_up(follow_up.pk) == "fallback"
    follow_up.refresh_from_db()
    assert follow_up.fallback_reason == "not_configured"
    assert follow_up.message.content.startswith("Hello Patient")


def test_a_patient_who_wrote_recently_is_looked_at_again_when_their_quiet_period_ends(
    make_patient,
):
    patient = quiet_patient(make_patient, days=1)
    assert plan_follow_ups() == 0
    state = FollowUpState.objects.get(patient=patient)
    assert abs(state.next_at - (patient.last_interaction_at + timedelta(hours=48))) < timedelta(
        seconds=1
    )


def test_at_most_two_in_any_seven_days(make_patient, fake_llm):
    patient = quiet_patient(make_patient, days=10)
    for days_ago in (6, 3):
        FollowUp.objects.create(
            patient=patient,
            kind=FollowUpKind.AUTOMATIC,
            status=FollowUpStatus.SCHEDULED,
            due_at=timezone.now() - timedelta(days=days_ago),
        )
    assert plan_follow_ups() == 0
    state = FollowUpState.objects.get(patient=patient)
    # The older of the two leaves the 7 days in one day: then there is room again.
    expected = timezone.now() + timedelta(days=1)
    assert abs(state.next_at - expected) < timedelta(seconds=5)


def test_no_follow_up_within_the_cooldown_after_a_check_in(make_patient):
    patient = quiet_patient(make_patient)
    two_hours_ago = timezone.now() - timedelta(hours=2)
    CheckIn.objects.create(
        patient=patient,
        local_date=two_hours_ago.date(),
        due_at=two_hours_ago,
        window_ends_at=two_hours_ago,
        status=CheckInStatus.SCHEDULED,
    )
    assert plan_follow_ups() == 0
    state = FollowUpState.objects.get(patient=patient)
    assert abs(state.next_at - (two_hours_ago + timedelta(hours=12))) < timedelta(seconds=1)


def test_never_inside_quiet_hours(make_patient):
    zone_now = timezone.now().astimezone(ZoneInfo("Europe/Berlin"))
    start = (zone_now - timedelta(hours=1)).time().replace(second=0, microsecond=0)
    end = (zone_now + timedelta(hours=1)).time().replace(second=0, microsecond=0)
    patient = quiet_patient(make_patient, quiet_hours_start=start, quiet_hours_end=end)
    assert plan_follow_ups() == 0
    state = FollowUpState.objects.get(patient=patient)
    assert state.next_at > timezone.now() + timedelta(minutes=55)


def test_the_patient_switches_follow_ups_off_and_on_from_the_bot(make_patient, fake_llm):
    patient = quiet_patient(make_patient)
    chat = patient.contacts.get().address
    reply = handle_text(channel="telegram", address=chat, text="/followups off")
    assert "Follow-ups are off" in reply
    assert not FollowUpState.objects.get(patient=patient).enabled
    assert plan_follow_ups() == 0
    assert "Follow-ups are off" in handle_text(
        channel="telegram", address=chat, text="/followups status"
    )
    assert "followups on" in handle_text(channel="telegram", address=chat, text="/followups maybe")
    assert "Follow-ups are on" in handle_text(
        channel="telegram", address=chat, text="/followups on"
    )
    assert FollowUpState.objects.get(patient=patient).enabled


def test_stop_stops_follow_ups_too(make_patient):
    patient = quiet_patient(make_patient)
    handle_text(channel="telegram", address=patient.contacts.get().address, text="/stop")
    FollowUpState.objects.filter(patient=patient).update(next_at=timezone.now())
    assert plan_follow_ups() == 0
    assert not FollowUp.objects.exists()


def test_an_answer_within_a_day_is_recorded_and_counted_in_the_response_rate(make_patient):
    patient = quiet_patient(make_patient)
    answered, ignored = (
        FollowUp.objects.create(
            patient=patient,
            kind=FollowUpKind.AUTOMATIC,
            status=FollowUpStatus.SCHEDULED,
            due_at=sent,
            sent_at=sent,
        )
        for sent in (timezone.now() - timedelta(hours=30), timezone.now() - timedelta(days=3))
    )
    # The patient writes 2 hours after the first was sent.
    note_patient_wrote(patient.pk, answered.sent_at + timedelta(hours=2))
    answered.refresh_from_db()
    ignored.refresh_from_db()
    assert answered.responded_at is not None and ignored.responded_at is None
    assert response_rate(patient.organization_id) == (1, 2)


def test_writing_to_the_bot_answers_the_latest_follow_up(make_patient):
    patient = quiet_patient(make_patient)
    sent = timezone.now() - timedelta(hours=1)
    follow_up = FollowUp.objects.create(
        patient=patient,
        kind=FollowUpKind.AUTOMATIC,
        status=FollowUpStatus.SCHEDULED,
        due_at=sent,
        sent_at=sent,
    )
    handle_text(channel="telegram", address=patient.contacts.get().address, text="I am fine")
    follow_up.refresh_from_db()
    assert follow_up.responded_at is not None


def test_a_care_team_follow_up_goes_at_its_time_past_the_cap(make_patient, fake_llm):
    patient = quiet_patient(make_patient, days=0.1)
    FollowUp.objects.bulk_create(
        FollowUp(
            patient=patient,
            kind=FollowUpKind.AUTOMATIC,
            status=FollowUpStatus.SCHEDULED,
            due_at=timezone.now() - timedelta(days=n),
        )
        for n in (1, 2)
    )
    planned = follow_up_schedule(patient, at=timezone.now() + timedelta(hours=24))
    assert planned.status == FollowUpStatus.PLANNED
    assert plan_follow_ups() == 0
    assert plan_follow_ups(now=timezone.now() + timedelta(hours=25)) == 1
    planned.refresh_from_db()
    assert planned.status == FollowUpStatus.WRITING
    assert write_follow_up(planned.pk) == "llm"


def test_a_care_team_cannot_follow_up_with_a_patient_who_opted_out_of_them(make_patient):
    from django.core.exceptions import ValidationError

    patient = quiet_patient(make_patient)
    FollowUpState.objects.filter(patient=patient).update(enabled=False)
    with pytest.raises(ValidationError, match="opted out of follow-ups"):
        follow_up_schedule(patient, at=timezone.now() + timedelta(hours=24))


@pytest.fixture
def api(organization) -> APIClient:
    provider = provider_create(
        organization_slug=organization.slug, username="fu-alice", new_token=True
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {provider.token}")
    return client


def test_the_api_plans_a_follow_up_lists_them_and_switches_them(api, make_patient):
    patient = quiet_patient(make_patient)
    url = f"/api/scheduler/patients/{patient.pk}"
    created = api.post(f"{url}/follow-ups/", {"in_hours": 24}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["kind"] == "manual" and created.json()["status"] == "planned"
    listed = api.get(f"{url}/follow-ups/").json()
    assert [row["id"] for row in listed["results"]] == [created.json()["id"]]
    for bad in (
        {"in_hours": "soon"},
        {},
        {"in_hours": 1, "at": "2030-01-01T00:00:00Z"},
        {"in_hours": -1},
        {"at": "2030-01-01T00:00:00"},
    ):
        answer = api.post(f"{url}/follow-ups/", bad, format="json")
        assert answer.status_code == 400, (bad, answer.content)
    assert (
        api.put(f"{url}/follow-up-settings/", {"enabled": "off"}, format="json").status_code == 400
    )
    switched = api.put(f"{url}/follow-up-settings/", {"enabled": False}, format="json")
    assert switched.status_code == 200 and switched.json() == {"enabled": False}
    refused = api.post(f"{url}/follow-ups/", {"in_hours": 2}, format="json")
    assert refused.status_code == 400 and "opted out of follow-ups" in refused.content.decode()


def test_another_clinics_patient_is_not_found(api, make_patient):
    from patients.models import Organization

    other = make_patient(org=Organization.objects.create(name="B", slug="clinic-b"))
    answer = api.post(
        f"/api/scheduler/patients/{other.pk}/follow-ups/", {"in_hours": 1}, format="json"
    )
    assert answer.status_code == 404


def test_the_admin_and_the_web_ui_plan_a_follow_up_in_24_hours(demo_client, patient):
    from scheduling.services import message_schedule

    Patient.objects.filter(pk=patient.pk).update(onboarding_done=True)
    answer = demo_client.post(
        "/admin/patients/patient/",
        {"action": "follow_up_in_24_hours", "_selected_action": [patient.pk]},
    )
    assert answer.status_code == 302
    message = message_schedule(
        patient=patient, content="x", starts_at=timezone.now() + timedelta(hours=2)
    )
    answer = demo_client.post(f"/scheduled-messages/{message.pk}/follow-up/")
    assert answer.status_code == 302
    due = list(FollowUp.objects.filter(patient=patient).values_list("kind", "status"))
    assert due == [(FollowUpKind.MANUAL, FollowUpStatus.PLANNED)] * 2


def test_an_idle_follow_up_tick_reads_the_index(organization):
    later = timezone.now() + timedelta(hours=30)
    patients = Patient.objects.bulk_create(
        Patient(organization=organization, name=f"P {n}") for n in range(2000)
    )
    FollowUpState.objects.filter(patient__in=patients).update(next_at=later)
    FollowUpState.objects.bulk_create(
        [FollowUpState(patient=p, next_at=later) for p in patients], ignore_conflicts=True
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE outreach_followupstate")
    from outreach.follow_ups import due_states

    sql, params = due_states(timezone.now(), 500).query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "follow_up_due_idx" in plan, plan
    with CaptureQueriesContext(connection) as queries:
        assert plan_follow_ups() == 0
    statements = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) <= 3 and all(s.startswith("SELECT") for s in statements), statements


def test_every_new_patient_has_a_follow_up_state(make_patient):
    patient = make_patient()
    state = FollowUpState.objects.get(patient=patient)
    assert state.enabled and state.next_at > timezone.now() + timedelta(hours=47)


def test_the_api_sets_a_patients_daily_check_in_and_lists_the_check_ins(
    api, make_patient, fake_weather
):
    patient = make_patient()
    url = f"/api/scheduler/patients/{patient.pk}"
    assert api.get(f"{url}/check-in-plan/").status_code == 404
    answer = api.put(
        f"{url}/check-in-plan/", {"local_time": "08:30", "place_name": "Berlin"}, format="json"
    )
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["enabled"] is True and body["local_time"] == "08:30"
    assert (body["latitude"], body["longitude"]) == ("52.5000", "13.4000")
    assert body["next_at"] is not None
    # Only the place name went to the geocoding service.
    [search] = [c for c in fake_weather.calls() if c.path == "/v1/search"]
    assert search.query["name"] == "Berlin"
    # Fields not given keep their values.
    answer = api.put(f"{url}/check-in-plan/", {"enabled": False}, format="json")
    assert answer.json()["local_time"] == "08:30" and answer.json()["next_at"] is None
    for bad in (
        {"enabled": "yes"},
        {"local_time": "25:00"},
        {"window_minutes": 1},
        {"latitude": "52.5"},
        {"place_name": "Nowhere"},
        {"latitude": 91, "longitude": 0},
    ):
        refused = api.put(f"{url}/check-in-plan/", bad, format="json")
        assert refused.status_code == 400, (bad, refused.content)
    assert api.get(f"{url}/check-ins/").json()["results"] == []
