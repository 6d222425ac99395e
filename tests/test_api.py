"""The REST API at /api/scheduler/: creating, listing, changing and cancelling messages,
their deliveries, templates, patients, health, and the provider command."""

import base64
import io
import socket
import time
from datetime import datetime, timedelta
from datetime import time as clock
from datetime import timezone as fixed_offset
from zoneinfo import ZoneInfo

import pytest
from auditlog.models import LogEntry
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from care_team.api.health import Check, check_beat, run_checks
from patients.api_tokens import api_token_issue
from patients.linking import LinkOutcome, link_chat, token_hash
from patients.models import (
    Channel,
    Contact,
    LinkToken,
    Membership,
    Organization,
    Patient,
    Role,
)
from patients.provisioning import provider_create
from scheduling.delivery import deliver
from scheduling.dispatch import dispatch_due
from scheduling.heartbeat import record_tick
from scheduling.models import (
    Delivery,
    DeliveryStatus,
    MessageStatus,
    MessageTemplate,
    ScheduledMessage,
)
from scheduling.services import message_schedule, message_send_now
from tests.conftest import ago, from_now
from tests.fakes.telegram_server import Reply

API = "/api/scheduler"


def token_client(token: str | None) -> APIClient:
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture
def provider(organization):
    """An admin of the `organization` fixture's clinic (clinic-a), made as operators do."""
    return provider_create(
        organization_slug=organization.slug, username="alice", admin=True, new_token=True
    )


@pytest.fixture
def api(provider) -> APIClient:
    return token_client(provider.token)


@pytest.fixture
def staff_api(organization) -> APIClient:
    staff = provider_create(organization_slug=organization.slug, username="bob", new_token=True)
    return token_client(staff.token)


def create(api, for_patient, **fields):
    body = {"patient": for_patient.pk, "content": "Time for your check-in", **fields}
    if not {"scheduled_time", "schedule", "recurrence"} & set(fields):
        body["schedule"] = "daily at 08:00"
    body = {name: value for name, value in body.items() if value is not None}
    return api.post(f"{API}/messages/", body, format="json")


def scheduled(patient, **kwargs) -> ScheduledMessage:
    kwargs.setdefault("content", "Take your medication")
    kwargs.setdefault("starts_at", from_now(3600))
    return message_schedule(patient=patient, **kwargs)


# --- Authentication ---------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_it_answers_401_without_a_valid_token(db, token):
    response = token_client(token).get(f"{API}/messages/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Token")


def test_a_logged_in_session_works_for_the_browsable_api(client, provider):
    client.force_login(provider.user)
    response = client.get(f"{API}/messages/", HTTP_ACCEPT="text/html")
    assert response.status_code == 200


def test_create_provider_prints_a_token_only_when_asked_and_keeps_only_its_hash(organization):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_provider", "north-clinic", "carol", "--admin", stdout=out, stderr=err)
    assert out.getvalue() == ""  # no token unless asked for
    assert "--new-token" in err.getvalue()
    membership = Membership.objects.get(user__username="carol")
    assert (membership.organization.slug, membership.organization.name) == (
        "north-clinic",
        "North Clinic",
    )
    assert membership.role == Role.ADMIN
    assert membership.user.is_staff and not membership.user.has_usable_password()

    call_command("create_provider", "north-clinic", "carol", "--new-token", stdout=out, stderr=err)
    token = out.getvalue().strip()
    assert token_client(token).get(f"{API}/patients/").status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM knox_authtoken")
        stored = repr(cursor.fetchall())
    assert token not in stored and token[15:] not in stored  # only a digest and a short key
    membership.refresh_from_db()
    assert membership.role == Role.ADMIN  # re-running without --admin does not demote


def test_api_tokens_expire_and_rotate(organization, settings):
    first = provider_create(organization_slug="north-clinic", username="dana", new_token=True)
    second = provider_create(organization_slug="north-clinic", username="dana", new_token=True)
    assert token_client(first.token).get(f"{API}/patients/").status_code == 200
    assert token_client(second.token).get(f"{API}/patients/").status_code == 200

    rotated = io.StringIO()
    quiet = {"stdout": rotated, "stderr": io.StringIO()}
    call_command("create_provider", "north-clinic", "dana", "--rotate", **quiet)
    assert token_client(first.token).get(f"{API}/patients/").status_code == 401
    assert token_client(second.token).get(f"{API}/patients/").status_code == 401
    fresh = rotated.getvalue().strip()
    assert token_client(fresh).get(f"{API}/patients/").status_code == 200

    token = AuthToken.objects.get(user=first.user)
    assert token.expiry - timezone.now() > timedelta(days=settings.API_TOKEN_DAYS - 1)
    AuthToken.objects.filter(pk=token.pk).update(expiry=timezone.now() - timedelta(seconds=1))
    expired = token_client(fresh).get(f"{API}/patients/")
    assert expired.status_code == 401
    assert not AuthToken.objects.filter(user=first.user).exists()  # removed when used


def test_create_provider_refuses_a_bad_slug(db):
    with pytest.raises(Exception, match="slug"):
        call_command(
            "create_provider", "not a slug", "dave", stdout=io.StringIO(), stderr=io.StringIO()
        )


def test_create_provider_sets_a_password_from_a_file_for_the_admin_and_web_ui(db, tmp_path, client):
    secret = tmp_path / "password"
    secret.write_text("a long and uncommon passphrase\n")
    quiet = {"stdout": io.StringIO(), "stderr": io.StringIO()}
    call_command("create_provider", "north-clinic", "erin", "--password-file", secret, **quiet)
    assert client.login(username="erin", password="a long and uncommon passphrase")
    assert client.get("/scheduled-messages/").status_code == 200


def test_create_provider_refuses_a_weak_password_and_says_why(db, tmp_path):
    secret = tmp_path / "password"
    secret.write_text("password")
    with pytest.raises(CommandError, match="too common"):
        quiet = {"stdout": io.StringIO(), "stderr": io.StringIO()}
        call_command("create_provider", "north-clinic", "fred", "--password-file", secret, **quiet)
    assert not Membership.objects.filter(user__username="fred").exists()  # nothing half-made


def test_the_api_creates_a_patients_telegram_link_with_its_qr_codes(api, patient, settings):
    settings.TELEGRAM_BOT_USERNAME = "clinic_bot"
    response = api.post(f"{API}/patients/{patient.pk}/telegram-link/")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["url"] == f"https://t.me/clinic_bot?start={body['token']}"
    assert body["qr_svg"].startswith("<svg")
    assert base64.b64decode(body["qr_png"]).startswith(b"\x89PNG")
    stored = LinkToken.objects.get(patient=patient)
    assert stored.token_hash == token_hash(body["token"])  # the token itself is not kept
    # The patient opens it: their chat is linked.
    assert link_chat(token=body["token"], chat_id="424242").outcome == LinkOutcome.LINKED


def test_another_clinics_patient_gets_no_telegram_link(api, make_patient):
    stranger = make_patient(org=Organization.objects.create(name="Other", slug="other"))
    assert api.post(f"{API}/patients/{stranger.pk}/telegram-link/").status_code == 404
    assert not LinkToken.objects.exists()


# --- Creating messages ------------------------------------------------------------------


def test_it_creates_a_one_time_message_from_content(api, patient):
    when = from_now(7200)
    response = create(
        api,
        patient,
        scheduled_time=when.isoformat(),
        format="html",
        content="<b>Dose</b> now",
        priority=2,
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    message = ScheduledMessage.objects.get(pk=body["id"])
    assert message.next_run_at == when
    assert (body["status"], body["recurrence"], body["priority"]) == ("active", "", 2)
    assert body["organization"] == "clinic-a"
    assert body["deliveries"] == [] and body["delivery_count"] == 0


@pytest.mark.parametrize(
    ("timing", "rule"),
    [
        ({"schedule": "daily at 08:00"}, "FREQ=DAILY;BYHOUR=8;BYMINUTE=0"),
        ({"recurrence": "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0"}, "FREQ=WEEKLY;BYDAY=MO"),
        ({"recurrence": "RRULE:FREQ=DAILY;INTERVAL=2;BYHOUR=7;BYMINUTE=30"}, "INTERVAL=2"),
        ({"recurrence": {"type": "weekly", "days": [0, 2], "time": "08:00"}}, "BYDAY=MO,WE"),
        ({"recurrence": {"type": "custom", "minutes": 120}}, "FREQ=MINUTELY;INTERVAL=120"),
    ],
)
def test_it_creates_a_recurring_message_from_a_phrase_a_rule_or_a_pattern(
    api, patient, timing, rule
):
    response = create(api, patient, **timing)

    assert response.status_code == 201, response.json()
    assert rule in response.json()["recurrence"]
    assert response.json()["next_run_at"] is not None


@pytest.mark.parametrize(
    "pattern",
    [{"type": "daily"}, {"type": "weekly", "days": [0, 2, 4]}, {"type": "monthly", "day": 15}],
)
def test_a_pattern_without_a_time_repeats_at_the_scheduled_time(api, make_patient, pattern):
    # The seed's examples: a scheduled time and a recurrence without "time".
    patient = make_patient(zone="Europe/Berlin")
    start = (timezone.now() + timedelta(days=3)).astimezone(ZoneInfo("Europe/Berlin"))
    start = start.replace(hour=9, minute=30, second=0, microsecond=0)
    response = create(api, patient, scheduled_time=start.isoformat(), recurrence=pattern)

    assert response.status_code == 201, response.json()
    assert "BYHOUR=9;BYMINUTE=30" in response.json()["recurrence"]
    first = datetime.fromisoformat(response.json()["next_run_at"])
    assert first >= start and first.astimezone(start.tzinfo).strftime("%H:%M") == "09:30"
    if pattern["type"] == "daily":
        assert first == start


def test_a_phrase_is_read_in_the_patients_zone_unless_a_zone_is_given(api, make_patient):
    berlin = make_patient(zone="Europe/Berlin")
    in_berlin = create(api, berlin, schedule="daily at 08:00").json()
    in_tokyo = create(api, berlin, schedule="daily at 08:00", timezone="Asia/Tokyo").json()

    assert in_berlin["effective_timezone"] == "Europe/Berlin"
    assert in_tokyo["effective_timezone"] == "Asia/Tokyo"
    assert in_berlin["next_run_at"] != in_tokyo["next_run_at"]


def test_it_creates_a_message_from_a_template_in_the_patients_language(api, patient):
    response = create(
        api,
        patient,
        content=None,
        template="appointment_reminder",
        parameters={"date": "2030-05-01", "time": "10:00"},
    )

    assert response.status_code == 201, response.json()
    assert response.json()["content"] == (
        f"Hello {patient.name}, a reminder of your appointment on 2030-05-01 at 10:00."
    )
    assert response.json()["metadata"]["template"] == "appointment_reminder"


def test_the_organizations_own_template_comes_first(api, patient, organization):
    MessageTemplate.objects.create(
        organization=organization, key="check_in", language="en", body="Hi {name}, all well?"
    )
    response = create(api, patient, content=None, template="check_in")
    assert response.json()["content"] == f"Hi {patient.name}, all well?"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"schedule": None}, "scheduled_time"),
        (
            {"scheduled_time": "2030-01-01T09:00:00+01:00", "schedule": "daily at 08:00"},
            "scheduled_time",
        ),
        ({"schedule": None, "scheduled_time": "2030-01-01T09:00:00"}, "scheduled_time"),
        ({"schedule": None, "scheduled_time": "2001-01-01T09:00:00+00:00"}, "scheduled_time"),
        ({"schedule": None, "scheduled_time": "9999-12-31T23:00:00+00:00"}, "scheduled_time"),
        ({"schedule": None, "scheduled_time": "0001-01-01T00:00:00+14:00"}, "scheduled_time"),
        ({"schedule": "dialy 08:00"}, "schedule"),
        ({"schedule": None, "recurrence": "FREQ=SOMETIMES"}, "recurrence"),
        ({"schedule": None, "recurrence": {"type": "yearly"}}, "recurrence"),
        ({"schedule": None, "recurrence": ["FREQ=DAILY"]}, "recurrence"),
        ({"template": "check_in"}, "content"),
        ({"content": None, "template": "appointment_reminder"}, "parameters"),
        ({"content": None, "template": "no_such_template"}, "template"),
        ({"content": None, "template": "check_in", "parameters": {"x": "1"}}, "parameters"),
        ({"content": None, "template": "check_in", "parameters": {"x": {"y": 1}}}, "parameters"),
        ({"content": "   "}, "content"),
        ({"content": 12345}, "content"),
        ({"content": 1.5}, "content"),
        ({"schedule": 8}, "schedule"),
        ({"content": "<script>x</script>", "format": "html"}, "content"),
        ({"format": "markdown"}, "format"),
        ({"priority": 9}, "priority"),
        ({"priority": 10**30}, "priority"),
        ({"priority": "high"}, "priority"),
        ({"priority": 3, "quiet_hours_override": True}, "quiet_hours_override"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"channel": "sms"}, "channel"),
        ({"channel": "pigeon"}, "channel"),
        ({"delivery_window_seconds": 10}, "delivery_window_seconds"),
        ({"delivery_window_seconds": 10**12}, "delivery_window_seconds"),
        ({"patient": 10**30}, "patient"),
        ({"patient": "abc"}, "patient"),
        ({"patient": True}, "patient"),
        ({"patient": None}, "patient"),
    ],
)
def test_each_invalid_input_is_a_400_naming_the_field(api, patient, fields, field):
    body = {"patient": patient.pk, "content": "Hello", "schedule": "daily at 08:00", **fields}
    body = {name: value for name, value in body.items() if value is not None or name == "patient"}

    response = api.post(f"{API}/messages/", body, format="json")

    assert response.status_code == 400, response.json()
    assert field in response.json(), response.json()
    assert all(isinstance(reason, str) and reason for reason in response.json()[field])
    assert not ScheduledMessage.objects.exists()


def test_a_nonexistent_patient_reads_not_found(api, patient):
    response = create(api, patient, patient=patient.pk + 1000)
    assert response.json() == {"patient": ["Not found."]}


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"patient": 1, ', "application/json"),
        (b"[1, 2]", "application/json"),
        (b'"text"', "application/json"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json"),
        (b'{"patient": 1, "content": "a\\u0000b"}', "application/json"),
        (b'{"patient": 1, "content": "\\ud800"}', "application/json"),
        (b'{"patient": 1, "content": NaN}', "application/json"),
        (b"patient=1&content=x", "application/x-www-form-urlencoded"),
        (b"\xff\xfe", "application/json"),
    ],
)
def test_malformed_bodies_are_4xx_never_500(api, db, body, content_type):
    response = api.generic("POST", f"{API}/messages/", body, content_type=content_type)
    assert response.status_code in (400, 415), response.content


# --- Listing ----------------------------------------------------------------------------


@pytest.fixture
def three_messages(make_patient):
    first, second = make_patient(), make_patient(chat_id=None)
    soon = scheduled(first, starts_at=from_now(600), priority=1)
    later = scheduled(first, starts_at=from_now(7200), priority=5, recurrence="FREQ=DAILY")
    web = scheduled(second, starts_at=from_now(3600), priority=3)
    web.status = MessageStatus.PAUSED
    web.save()
    return soon, later, web


def ids(response) -> list[int]:
    assert response.status_code == 200, response.json()
    return [row["id"] for row in response.json()["results"]]


def test_the_list_filters_by_status_patient_channel_and_due_time(api, three_messages):
    soon, later, web = three_messages
    url = f"{API}/messages/"
    assert ids(api.get(url, {"status": "paused"})) == [web.pk]
    assert set(ids(api.get(url, {"patient": soon.patient_id}))) == {soon.pk, later.pk}
    assert ids(api.get(url, {"channel": "web"})) == [web.pk]
    due_before = (soon.next_run_at + timedelta(seconds=1)).isoformat()
    assert ids(api.get(url, {"due_before": due_before})) == [soon.pk]
    due_after = (web.next_run_at - timedelta(seconds=1)).isoformat()
    assert set(ids(api.get(url, {"due_after": due_after}))) == {web.pk, later.pk}
    # An offset PostgreSQL would refuse (past 15:59) is read as the instant it names.
    far_east = (web.next_run_at - timedelta(seconds=1)).astimezone(
        fixed_offset(timedelta(hours=21, minutes=30))
    )
    assert set(ids(api.get(url, {"due_after": far_east.isoformat()}))) == {web.pk, later.pk}


@pytest.mark.parametrize(
    "query",
    [
        {"status": "sleeping"},
        {"patient": "abc"},
        {"patient": 10**30},
        {"channel": "fax"},
        {"due_before": "yesterday"},
        {"due_after": "2030-13-01T00:00:00Z"},
        {"due_after": "0001-01-01T00:00:00+23:00"},
    ],
)
def test_a_bad_filter_is_a_400_naming_it(api, three_messages, query):
    response = api.get(f"{API}/messages/", query)
    assert response.status_code == 400
    assert set(query) <= set(response.json())


def test_the_list_orders_by_next_run_priority_or_creation(api, three_messages):
    soon, later, web = three_messages
    url = f"{API}/messages/"
    assert ids(api.get(url, {"ordering": "next_run_at"})) == [soon.pk, web.pk, later.pk]
    assert ids(api.get(url, {"ordering": "-priority"})) == [later.pk, web.pk, soon.pk]
    assert ids(api.get(url, {"ordering": "created_at"})) == [soon.pk, later.pk, web.pk]
    assert ids(api.get(url)) == [web.pk, later.pk, soon.pk]  # newest first by default


def test_the_list_is_paginated_with_a_page_size_of_at_most_200(api, patient, organization):
    ScheduledMessage.objects.bulk_create(
        ScheduledMessage(
            organization=organization,
            patient=patient,
            channel=Channel.TELEGRAM,
            content="x",
            starts_at=from_now(600),
            next_run_at=from_now(600),
        )
        for _ in range(205)
    )
    first = api.get(f"{API}/messages/", {"page_size": 2}).json()
    assert (first["count"], len(first["results"])) == (205, 2)
    assert "page=2" in first["next"]
    assert len(api.get(f"{API}/messages/", {"page_size": 1000}).json()["results"]) == 200
    assert len(api.get(f"{API}/messages/").json()["results"]) == 50
    assert api.get(f"{API}/messages/", {"page": 999}).status_code == 404


# --- One message: deliveries, changes, actions ------------------------------------------


def test_a_message_shows_its_deliveries_and_their_attempts(api, patient, fake_telegram):
    message = scheduled(patient, starts_at=ago(1))
    dispatch_due()
    delivery = message.deliveries.get()
    fake_telegram.push(Reply.server_error(502))
    deliver(delivery.pk)
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=ago(1))
    deliver(delivery.pk)

    body = api.get(f"{API}/messages/{message.pk}/").json()

    assert body["delivery_count"] == 1
    [shown] = body["deliveries"]
    assert (shown["id"], shown["status"], shown["attempt_count"]) == (delivery.pk, "sent", 2)
    assert [a["outcome"] for a in shown["attempts"]] == ["transient", "sent"]
    assert shown["attempts"][0]["error_code"] == "network"


def test_a_pending_message_can_be_changed_and_a_new_time_replans_it(api, patient):
    message = scheduled(patient, recurrence="FREQ=DAILY;BYHOUR=8;BYMINUTE=0")

    response = api.patch(
        f"{API}/messages/{message.pk}/",
        {"content": "New text", "schedule": "daily at 21:00"},
        format="json",
    )

    assert response.status_code == 200, response.json()
    message.refresh_from_db()
    assert message.content == "New text"
    assert message.recurrence == "FREQ=DAILY;BYHOUR=21;BYMINUTE=0"
    assert message.next_run_at.astimezone(patient.zone).hour == 21
    assert response.json()["next_run_at"] is not None


def test_changing_only_the_zone_keeps_the_local_time(api, patient):
    message = scheduled(patient, recurrence="FREQ=DAILY;BYHOUR=8;BYMINUTE=0")
    response = api.put(
        f"{API}/messages/{message.pk}/", {"timezone": "America/New_York"}, format="json"
    )
    assert response.status_code == 200, response.json()
    message.refresh_from_db()
    assert message.zone_name == "America/New_York"
    assert message.next_run_at.astimezone(ZoneInfo("America/New_York")).hour == 8


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"schedule": "dialy"}, "schedule"),
        ({"content": "<b>open", "format": "html"}, "content"),
        ({"priority": 2, "quiet_hours_override": True}, "quiet_hours_override"),
        ({"schedule": "daily at 08:00", "recurrence": "FREQ=DAILY"}, "recurrence"),
        ({"scheduled_time": "2001-01-01T00:00:00+00:00"}, "scheduled_time"),
        ({"channel": "sms"}, "channel"),
    ],
)
def test_an_invalid_change_is_a_400_and_changes_nothing(api, patient, fields, field):
    message = scheduled(patient, recurrence="FREQ=DAILY;BYHOUR=8;BYMINUTE=0")
    response = api.patch(f"{API}/messages/{message.pk}/", fields, format="json")
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert ScheduledMessage.objects.get(pk=message.pk).recurrence == message.recurrence


def test_a_finished_or_dispatched_one_time_message_cannot_be_changed(api, patient):
    cancelled = scheduled(patient)
    api.post(f"{API}/messages/{cancelled.pk}/cancel/")
    dispatched = scheduled(patient, starts_at=ago(1))
    dispatch_due()
    recurring = scheduled(patient, recurrence="FREQ=HOURLY")
    message_send_now(recurring)

    for message in (cancelled, dispatched):
        response = api.patch(f"{API}/messages/{message.pk}/", {"content": "x"}, format="json")
        assert response.status_code == 400
        assert "status" in response.json()
    # A recurring message with deliveries goes on, so it may still change.
    response = api.patch(f"{API}/messages/{recurring.pk}/", {"content": "y"}, format="json")
    assert response.status_code == 200


def test_delete_cancels_the_message_and_the_trail_names_the_user(api, provider, patient):
    message = scheduled(patient)

    response = api.delete(f"{API}/messages/{message.pk}/")

    assert response.status_code == 204
    message.refresh_from_db()
    assert message.status == MessageStatus.CANCELLED
    entry = LogEntry.objects.get_for_object(message).filter(additional_data__action="cancel").get()
    assert entry.actor == provider.user


def test_cancel_stops_queued_deliveries_and_is_idempotent(api, patient):
    message = scheduled(patient, starts_at=ago(1))
    dispatch_due()

    first = api.post(f"{API}/messages/{message.pk}/cancel/")
    second = api.post(f"{API}/messages/{message.pk}/cancel/")

    assert first.status_code == second.status_code == 200
    assert first.json()["status"] == "cancelled"
    assert first.json()["deliveries"][0]["status"] == "cancelled"


def test_send_now_creates_a_delivery_and_queues_it(
    api, patient, broker, django_capture_on_commit_callbacks
):
    message = scheduled(patient, recurrence="FREQ=DAILY")

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"{API}/messages/{message.pk}/send-now/")

    assert response.status_code == 202, response.json()
    delivery = Delivery.objects.get(message=message)
    assert response.json()["id"] == delivery.pk
    assert delivery.status == DeliveryStatus.QUEUED
    assert broker.queue_length("deliver.telegram") == 1
    message.refresh_from_db()
    assert message.status == MessageStatus.ACTIVE  # a recurring message keeps its schedule


def test_send_now_of_a_cancelled_message_is_a_400(api, patient):
    message = scheduled(patient)
    api.delete(f"{API}/messages/{message.pk}/")
    response = api.post(f"{API}/messages/{message.pk}/send-now/")
    assert response.status_code == 400
    assert "status" in response.json()


def test_retry_queues_the_failed_deliveries_again(api, patient, fake_telegram):
    message = scheduled(patient, starts_at=ago(1))
    dispatch_due()
    delivery = message.deliveries.get()
    fake_telegram.push(Reply.chat_not_found())
    deliver(delivery.pk)
    assert Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.FAILED

    response = api.post(f"{API}/messages/{message.pk}/retry/")

    assert response.json() == {"retried": 1}
    assert Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.QUEUED
    assert api.post(f"{API}/messages/{message.pk}/retry/").json() == {"retried": 0}


def test_preview_lists_the_next_occurrences_in_local_and_utc_time(api, patient):
    patient.quiet_hours_start, patient.quiet_hours_end = clock(22), clock(7)
    patient.save()
    message = scheduled(patient, recurrence="FREQ=DAILY;BYHOUR=6;BYMINUTE=0")

    body = api.get(f"{API}/messages/{message.pk}/preview/", {"count": 3}).json()

    assert body["timezone"] == "Europe/Berlin"
    assert len(body["occurrences"]) == 3
    first = body["occurrences"][0]
    assert first["local"][11:16] == "07:00" and first["local"][-6:] in ("+01:00", "+02:00")
    assert first["moved_from_local"][11:16] == "06:00"
    assert first["utc"].endswith("Z")


@pytest.mark.parametrize("count", ["0", "51", "abc", "1e3"])
def test_preview_count_out_of_range_is_a_400(api, patient, count):
    message = scheduled(patient)
    response = api.get(f"{API}/messages/{message.pk}/preview/", {"count": count})
    assert response.status_code == 400
    assert "count" in response.json()


def test_a_draft_is_previewed_without_saving_it(api, patient):
    response = api.post(
        f"{API}/messages/preview/",
        {"patient": patient.pk, "schedule": "every 2 days at 09:30", "count": 2},
        format="json",
    )

    assert response.status_code == 200, response.json()
    occurrences = response.json()["occurrences"]
    assert [o["local"][11:16] for o in occurrences] == ["09:30", "09:30"]
    assert not ScheduledMessage.objects.exists()
    bad = api.post(
        f"{API}/messages/preview/", {"patient": patient.pk, "schedule": "soonish"}, format="json"
    )
    assert bad.status_code == 400 and "schedule" in bad.json()


# --- Bulk -------------------------------------------------------------------------------


def test_bulk_create_saves_every_item(api, patient):
    items = [
        {"patient": patient.pk, "content": f"Message {n}", "schedule": "daily at 08:00"}
        for n in range(3)
    ]
    response = api.post(f"{API}/messages/bulk/", {"create": items}, format="json")
    assert response.status_code == 200, response.json()
    assert len(response.json()["created"]) == 3
    assert ScheduledMessage.objects.count() == 3


def test_bulk_create_saves_nothing_when_one_item_fails(api, patient):
    items = [
        {"patient": patient.pk, "content": "fine", "schedule": "daily at 08:00"},
        {"patient": patient.pk, "content": "bad", "schedule": "dialy 08:00"},
        {"patient": patient.pk, "content": "fine too", "schedule": "daily at 09:00"},
        {"patient": "x", "content": "bad shape"},
    ]
    response = api.post(f"{API}/messages/bulk/", {"create": items}, format="json")

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [e["index"] for e in errors] == [1, 3]
    assert "schedule" in errors[0]["errors"] and "patient" in errors[1]["errors"]
    assert not ScheduledMessage.objects.exists()
    assert not LogEntry.objects.filter(content_type__model="scheduledmessage").exists()


def test_bulk_cancel_is_all_or_nothing(api, patient):
    first, second = scheduled(patient), scheduled(patient)

    failed = api.post(f"{API}/messages/bulk/", {"cancel": [first.pk, 0, "x"]}, format="json")
    assert failed.status_code == 400
    assert [e["index"] for e in failed.json()["errors"]] == [1, 2]
    assert ScheduledMessage.objects.get(pk=first.pk).status == MessageStatus.ACTIVE

    done = api.post(f"{API}/messages/bulk/", {"cancel": [first.pk, second.pk]}, format="json")
    assert done.json() == {"created": [], "cancelled": [first.pk, second.pk]}
    assert set(ScheduledMessage.objects.values_list("status", flat=True)) == {"cancelled"}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"create": []},
        {"create": [{}], "cancel": [1]},
        {"cancel": "1"},
        [1],
        {"create": [{}] * 501},
    ],
)
def test_a_malformed_bulk_request_is_a_400(api, db, body):
    assert api.post(f"{API}/messages/bulk/", body, format="json").status_code == 400


# --- Templates --------------------------------------------------------------------------


def test_templates_list_the_organizations_the_global_and_the_builtin_ones(api, organization):
    MessageTemplate.objects.create(
        organization=organization, key="check_in", language="en", body="Hi {name}"
    )
    MessageTemplate.objects.create(key="follow_up", language="fr", body="Bonjour {name}")
    other = Organization.objects.create(name="Other", slug="other")
    MessageTemplate.objects.create(organization=other, key="secret", language="en", body="x")

    rows = api.get(f"{API}/templates/").json()

    shown = {(r["organization"], r["key"], r["language"], r["builtin"]) for r in rows}
    assert ("clinic-a", "check_in", "en", False) in shown
    assert (None, "follow_up", "fr", False) in shown
    assert (None, "appointment_reminder", "de", True) in shown
    assert all(r["key"] != "secret" for r in rows)
    builtin = next(r for r in rows if r["key"] == "appointment_reminder" and r["builtin"])
    assert builtin["parameters"] == ["date", "name", "time"] and builtin["id"] is None
    only = api.get(f"{API}/templates/", {"key": "check_in", "language": "EN"}).json()
    assert {(r["key"], r["language"]) for r in only} == {("check_in", "en")}


def test_a_template_is_created_changed_and_deleted_in_the_users_organization(api):
    created = api.post(
        f"{API}/templates/",
        {"key": "lab_results", "language": "EN", "body": "Hello {name}, see {where}."},
        format="json",
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["organization"], body["language"], body["parameters"]) == (
        "clinic-a",
        "en",
        ["name", "where"],
    )
    url = f"{API}/templates/{body['id']}/"
    assert api.patch(url, {"body": "Hi {name}"}, format="json").json()["parameters"] == ["name"]
    assert api.delete(url).status_code == 204
    assert not MessageTemplate.objects.exists()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"body": "Hi {name"}, "body"),
        ({"body": "Hi {0.x}"}, "body"),
        ({"language": "english!"}, "language"),
        ({"key": "two words"}, "key"),
        ({"organization": "other"}, "organization"),
    ],
)
def test_an_invalid_template_is_a_400(api, db, fields, field):
    Organization.objects.create(name="Other", slug="other")
    body = {"key": "check_in", "language": "en", "body": "Hi {name}", **fields}
    response = api.post(f"{API}/templates/", body, format="json")
    assert response.status_code == 400
    assert field in response.json(), response.json()


def test_a_template_cannot_move_to_another_organization_or_become_global(api, organization):
    own = MessageTemplate.objects.create(
        organization=organization, key="x", language="en", body="Hi"
    )
    Organization.objects.create(name="Other", slug="other")
    for moved in (None, "other"):
        response = api.put(
            f"{API}/templates/{own.pk}/",
            {"key": "x", "language": "en", "body": "Hi", "organization": moved},
            format="json",
        )
        assert response.status_code == 400 and "organization" in response.json()
    same = api.put(
        f"{API}/templates/{own.pk}/",
        {"key": "x", "language": "en", "body": "Yo", "organization": "clinic-a"},
        format="json",
    )
    assert same.status_code == 200


def test_a_template_key_and_language_exist_once_per_organization(api):
    body = {"key": "check_in", "language": "en", "body": "Hi {name}"}
    assert api.post(f"{API}/templates/", body, format="json").status_code == 201
    again = api.post(f"{API}/templates/", body, format="json")
    assert again.status_code == 400 and "key" in again.json()


def test_global_templates_are_read_only_and_staff_cannot_delete(api, staff_api, organization):
    global_row = MessageTemplate.objects.create(key="check_in", language="en", body="Hi")
    own = MessageTemplate.objects.create(
        organization=organization, key="x", language="en", body="Hi"
    )
    assert api.get(f"{API}/templates/{global_row.pk}/").status_code == 200
    assert (
        api.patch(f"{API}/templates/{global_row.pk}/", {"body": "Yo"}, format="json").status_code
        == 403
    )
    assert (
        staff_api.patch(f"{API}/templates/{own.pk}/", {"body": "Yo"}, format="json").status_code
        == 200
    )
    assert staff_api.delete(f"{API}/templates/{own.pk}/").status_code == 403


# --- Patients ---------------------------------------------------------------------------


def test_a_patient_is_created_with_contacts_in_the_users_only_organization(api, organization):
    response = api.post(
        f"{API}/patients/",
        {
            "name": "Dana",
            "timezone": "America/New_York",
            "contacts": [
                {"channel": "telegram", "address": " 555123 "},
                {"channel": "sms", "address": "+15551234567"},
            ],
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["organization"] == "clinic-a" and body["active"] is True
    contacts = {c["channel"]: c for c in body["contacts"]}
    assert contacts["telegram"]["address"] == "555123"
    assert contacts["telegram"]["verified"] is False  # the patient links it (or it is confirmed)
    assert contacts["sms"]["verified"] is False and contacts["sms"]["blocked"] is False
    quiet = api.patch(
        f"{API}/patients/{body['id']}/",
        {"quiet_hours_start": "22:00", "quiet_hours_end": "07:00"},
        format="json",
    )
    assert (quiet.json()["quiet_hours_start"], quiet.json()["quiet_hours_end"]) == (
        "22:00",
        "07:00",
    )


def test_a_user_in_several_organizations_must_name_one(api, provider):
    second = Organization.objects.create(name="Second", slug="second")
    Membership.objects.create(user=provider.user, organization=second)
    Organization.objects.create(name="Not mine", slug="not-mine")

    missing = api.post(f"{API}/patients/", {"name": "Eve"}, format="json")
    not_mine = api.post(
        f"{API}/patients/", {"name": "Eve", "organization": "not-mine"}, format="json"
    )
    unknown = api.post(
        f"{API}/patients/", {"name": "Eve", "organization": "nowhere"}, format="json"
    )
    named = api.post(f"{API}/patients/", {"name": "Eve", "organization": "second"}, format="json")

    assert missing.status_code == 400 and "organization" in missing.json()
    assert not_mine.json() == unknown.json() == {"organization": ["Not found."]}
    assert named.status_code == 201 and named.json()["organization"] == "second"


@pytest.mark.parametrize(
    ("contact", "reason"),
    [
        ({"channel": "telegram", "address": "abc"}, "chat id"),
        ({"channel": "sms", "address": "0151"}, "E.164"),
        ({"channel": "email", "address": "nope"}, "e-mail"),
        ({"channel": "web", "address": "x"}, "valid choice"),
    ],
)
def test_a_contact_address_is_checked_for_its_channel(api, db, contact, reason):
    response = api.post(f"{API}/patients/", {"name": "F", "contacts": [contact]}, format="json")
    assert response.status_code == 400
    assert reason in str(response.json()["contacts"])


def test_an_address_another_patient_of_the_clinic_has_is_refused(api, patient):
    taken = patient.contacts.get().address
    response = api.post(
        f"{API}/patients/",
        {"name": "G", "contacts": [{"channel": "telegram", "address": taken}]},
        format="json",
    )
    assert response.status_code == 400
    assert "Another patient of this clinic" in str(response.json()["contacts"])


def test_updating_contacts_keeps_the_blocked_state_which_is_read_only(api, patient):
    contact = patient.contacts.get()
    Contact.objects.filter(pk=contact.pk).update(blocked_at=timezone.now(), blocked_reason="403")

    response = api.patch(
        f"{API}/patients/{patient.pk}/",
        {
            "contacts": [
                {"channel": "telegram", "address": contact.address, "blocked": False},
                {"channel": "email", "address": "g@example.org"},
            ]
        },
        format="json",
    )

    assert response.status_code == 200, response.json()
    contact.refresh_from_db()
    assert contact.blocked_at is not None and contact.blocked_reason == "403"
    assert contact.verified_at is not None  # not given: kept
    assert patient.contacts.count() == 2
    assert patient.contacts.get(channel="email").verified_at is None
    response = api.patch(f"{API}/patients/{patient.pk}/", {"contacts": []}, format="json")
    assert not patient.contacts.exists()


def test_staff_add_and_change_contacts_but_only_admins_remove_them(api, staff_api, patient):
    contact = patient.contacts.get()
    url = f"{API}/patients/{patient.pk}/"
    sms = {"channel": "sms", "address": "+15551234567"}

    refused = [
        staff_api.patch(url, {"contacts": []}, format="json"),
        staff_api.patch(url, {"name": "Renamed", "contacts": [sms]}, format="json"),
        staff_api.put(url, {"name": "Renamed", "contacts": [sms]}, format="json"),
    ]

    for response in refused:
        assert response.status_code == 403, response.content
        detail = response.json()["detail"]
        assert "Only an admin of the organization may remove a patient's contacts" in detail
        assert f"telegram contact {contact.pk}" in detail and contact.address not in detail
    patient.refresh_from_db()
    assert patient.name != "Renamed" and list(patient.contacts.all()) == [contact]

    kept = {"channel": "telegram", "address": contact.address, "verified": False}
    changed = staff_api.patch(url, {"contacts": [kept, sms]}, format="json")
    assert changed.status_code == 200, changed.content
    contact.refresh_from_db()
    assert contact.verified_at is None and patient.contacts.count() == 2

    assert api.patch(url, {"contacts": [sms]}, format="json").status_code == 200
    assert list(patient.contacts.values_list("channel", flat=True)) == ["sms"]


def test_a_new_patient_zone_reschedules_their_messages(api, patient):
    message = scheduled(patient, recurrence="FREQ=DAILY;BYHOUR=8;BYMINUTE=0")
    response = api.patch(f"{API}/patients/{patient.pk}/", {"timezone": "Asia/Tokyo"}, format="json")
    assert response.status_code == 200
    message.refresh_from_db()
    assert message.next_run_at.astimezone(ZoneInfo("Asia/Tokyo")).hour == 8


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"timezone": "Nowhere/Land"}, "timezone"),
        ({"quiet_hours_start": "22:00"}, "quiet_hours_end"),
        ({"quiet_hours_start": "22:00", "quiet_hours_end": "22:00"}, "quiet_hours_end"),
        ({"preferred_channel": "fax"}, "preferred_channel"),
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"quiet_hours_start": "22:00:30", "quiet_hours_end": "07:00"}, "quiet_hours_start"),
        ({"name": 42}, "name"),
        ({"contacts": [{"channel": "telegram", "address": 123456789}]}, "contacts"),
    ],
)
def test_an_invalid_patient_is_a_400(api, db, fields, field):
    response = api.post(f"{API}/patients/", {"name": "H", **fields}, format="json")
    assert response.status_code == 400
    assert field in response.json(), response.json()


def test_deleting_a_patient_deactivates_them_and_only_admins_may(api, staff_api, patient):
    message = scheduled(patient)
    assert staff_api.delete(f"{API}/patients/{patient.pk}/").status_code == 403
    assert (
        staff_api.patch(
            f"{API}/patients/{patient.pk}/", {"language": "de"}, format="json"
        ).status_code
        == 200
    )

    assert api.delete(f"{API}/patients/{patient.pk}/").status_code == 204

    patient.refresh_from_db()
    message.refresh_from_db()
    assert patient.opted_out_at is not None
    assert message.status == MessageStatus.CANCELLED
    assert api.get(f"{API}/patients/{patient.pk}/").json()["active"] is False


def test_a_user_without_membership_reads_nothing_and_writes_nothing(db, patient):
    from django.contrib.auth.models import User

    lonely = User.objects.create_user("lonely")
    api = token_client(api_token_issue(lonely))
    assert api.get(f"{API}/patients/").json()["count"] == 0
    assert api.post(f"{API}/patients/", {"name": "I"}, format="json").status_code == 403


def test_changes_through_the_api_name_the_token_user_in_the_trail(api, provider, patient):
    response = api.patch(f"{API}/patients/{patient.pk}/", {"language": "de"}, format="json")
    assert response.status_code == 200
    entry = LogEntry.objects.get_for_object(Patient.objects.get(pk=patient.pk)).latest("pk")
    assert entry.actor == provider.user
    created = create(api, patient)
    entry = LogEntry.objects.get_for_object(ScheduledMessage.objects.get(pk=created.json()["id"]))
    assert entry.get().actor == provider.user


def test_a_superuser_sees_every_organization(db, patient):
    from django.contrib.auth.models import User

    root = User.objects.create_superuser("root", password=None)
    api = token_client(api_token_issue(root))
    assert [p["id"] for p in api.get(f"{API}/patients/").json()["results"]] == [patient.pk]
    missing = api.post(f"{API}/patients/", {"name": "J"}, format="json")
    assert missing.status_code == 400 and "organization" in missing.json()


# --- Health -----------------------------------------------------------------------------


def test_health_is_200_when_everything_answers(celery_stack, client):
    record_tick()
    response = client.get(f"{API}/health/")  # no token: probes have none

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok" and body["failing"] == []
    assert set(body["checks"]) == {"database", "redis", "beat", "workers"}


def test_health_is_503_naming_redis_beat_and_workers_when_redis_is_down(db, client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1

    response = client.get(f"{API}/health/")

    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["beat", "redis", "workers"]
    assert body["checks"]["database"]["ok"] is True
    assert "127.0.0.1" not in response.content.decode()


def test_health_answers_within_3_seconds_when_redis_hangs(db, client, settings):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts connections into the backlog, never answers
    settings.REDIS_URL = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
    try:
        started = time.monotonic()
        response = client.get(f"{API}/health/")
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert response.status_code == 503
    assert elapsed < 3


def test_beat_fails_when_its_last_tick_is_old(db, broker, settings):
    settings.SCHEDULER_TICK_SECONDS = 1
    broker.client.set("companion:dispatch:last_tick", f"{time.time() - 60:.3f}")
    result = run_checks({"beat": check_beat})
    assert result["beat"].ok is False and "60 s ago" in result["beat"].detail


def test_a_check_that_hangs_or_raises_fails_without_holding_the_answer():
    def hangs() -> Check:
        time.sleep(2)
        return Check(True, "late")

    def raises() -> Check:
        raise RuntimeError("boom")

    started = time.monotonic()
    result = run_checks({"hangs": hangs, "raises": raises}, deadline=0.3)
    assert time.monotonic() - started < 1
    assert result["hangs"] == Check(False, "no answer within 0.3 s")
    assert result["raises"] == Check(False, "error (RuntimeError)")


def test_the_schema_and_docs_are_served(client, provider):
    client.force_login(provider.user)
    schema = client.get(f"{API}/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert "/api/scheduler/messages/bulk/" in schema.json()["paths"]
    assert client.get(f"{API}/docs/").status_code == 200
    assert client.get(f"{API}/docs/redoc/").status_code == 200


def test_every_route_renders_in_the_browsable_api_and_answers_options(client, provider, patient):
    message = scheduled(patient, recurrence="FREQ=DAILY")
    template = MessageTemplate.objects.create(
        organization=patient.organization, key="k", language="en", body="Hi {name}"
    )
    client.force_login(provider.user)
    paths = [
        "patients/",
        f"patients/{patient.pk}/",
        "messages/",
        f"messages/{message.pk}/",
        f"messages/{message.pk}/preview/",
        "templates/",
        f"templates/{template.pk}/",
        "messages/bulk/",
        "messages/preview/",
        f"messages/{message.pk}/cancel/",
        f"messages/{message.pk}/send-now/",
        f"messages/{message.pk}/retry/",
        "",
    ]
    for path in paths:
        page = client.get(f"{API}/{path}", HTTP_ACCEPT="text/html")
        assert page.status_code in (200, 405), (path, page.status_code)
        options = client.options(f"{API}/{path}")
        assert options.status_code == 200, (path, options.status_code)


@pytest.mark.parametrize("path", ["nothing-here/", "messages", "messages/1/nope/"])
def test_an_unknown_api_path_is_a_json_404(api, db, path):
    for method in ("get", "post"):
        response = getattr(api, method)(f"{API}/{path}", {}, format="json")
        assert response.status_code == 404
        assert "detail" in response.json()


@pytest.mark.parametrize("item", [{"address": "a@example.org"}, {"channel": "email"}])
def test_a_patch_with_an_incomplete_contact_is_a_400_and_keeps_the_contacts(api, patient, item):
    before = list(patient.contacts.values_list("channel", "address"))
    response = api.patch(f"{API}/patients/{patient.pk}/", {"contacts": [item]}, format="json")
    assert response.status_code == 400, response.content
    assert "required" in str(response.json())
    assert list(patient.contacts.values_list("channel", "address")) == before
