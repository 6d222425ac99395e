"""The daily report: its figures against deliveries, answers, check-ins and follow-ups
made for one day in two clinics; the CSV from the API and the admin, each clinic seeing
only its own; and the e-mail to each clinic's admins, once."""

import csv
import io
import re
from datetime import UTC, date, datetime, time, timedelta

import pytest
from django.contrib.auth.models import User
from django.core import mail

from operations.report_mail import send_daily_reports
from operations.reports import daily_reports
from outreach.models import CheckIn, CheckInStatus, FollowUp, FollowUpKind, FollowUpStatus
from patients.models import Membership, Organization, Patient, Role
from patients.provisioning import provider_create
from scheduling.models import (
    AckAction,
    Acknowledgement,
    Delivery,
    DeliveryStatus,
    MessageKind,
    ScheduledMessage,
)
from scheduling.services import message_schedule
from tests.conftest import from_now

DAY = date(2026, 3, 10)
NOON = datetime.combine(DAY, time(12), tzinfo=UTC)


def deliver(message, *, status, minute, late=None, channel=None):
    """A delivery of the message due at NOON + minute, sent `late` seconds after."""
    at = NOON + timedelta(minutes=minute)
    return Delivery.objects.create(
        message=message,
        occurrence_at=at,
        channel=channel or message.channel,
        status=status,
        next_attempt_at=at,
        expires_at=at + timedelta(hours=1),
        sent_at=None if late is None else at + timedelta(seconds=late),
    )


def message_for(patient, *, channel="telegram", kind=MessageKind.GENERAL):
    message = message_schedule(patient=patient, content="Take 5 mg", starts_at=from_now(3600))
    ScheduledMessage.objects.filter(pk=message.pk).update(channel=channel, kind=kind)
    message.refresh_from_db()
    return message


@pytest.fixture
def clinics(organization, make_patient):
    """Clinic A (the `organization` fixture) with a known day of activity; clinic B with a
    little of its own that must never show in A's figures."""
    a = organization
    b = Organization.objects.create(name="Clinic B", slug="clinic-b")
    first, second, third = make_patient(), make_patient(), make_patient()

    general = message_for(first)
    for minute, late in ((0, 10), (1, 20), (2, 30)):
        deliver(general, status=DeliveryStatus.SENT, minute=minute, late=late)
    deliver(general, status=DeliveryStatus.FAILED, minute=3)
    deliver(general, status=DeliveryStatus.CANCELLED, minute=4)
    deliver(general, status=DeliveryStatus.QUEUED, minute=24 * 60 + 5)  # the next day
    deliver(general, status=DeliveryStatus.SENT, minute=-13 * 60, late=1)  # the day before
    texts = message_for(first, channel="sms")
    deliver(texts, status=DeliveryStatus.SENT, minute=5, late=40)
    deliver(texts, status=DeliveryStatus.EXPIRED, minute=6)
    pills = message_for(second, kind=MessageKind.MEDICATION)
    for minute, answer in (
        (10, AckAction.TAKEN),
        (11, AckAction.TAKEN),
        (12, AckAction.MISSED),
        (13, AckAction.SNOOZED),
    ):
        dose = deliver(pills, status=DeliveryStatus.SENT, minute=minute, late=0)
        Acknowledgement.objects.create(delivery=dose, action=answer, at=dose.sent_at)

    # Check-ins at 09:00: the first patient wrote after theirs, the second only before.
    nine = NOON - timedelta(hours=3)
    for patient in (first, second, third):
        CheckIn.objects.create(
            patient=patient,
            local_date=DAY,
            due_at=nine,
            window_ends_at=nine + timedelta(hours=1),
            status=CheckInStatus.SCHEDULED,
        )
    Patient.objects.filter(pk=first.pk).update(last_interaction_at=nine + timedelta(hours=2))
    Patient.objects.filter(pk=second.pk).update(last_interaction_at=nine - timedelta(hours=2))
    skipped = make_patient()
    CheckIn.objects.create(
        patient=skipped,
        local_date=DAY,
        due_at=nine,
        window_ends_at=nine,
        status=CheckInStatus.SKIPPED,
    )
    for patient, answered, sent in (
        (first, True, NOON),
        (second, False, NOON),
        (third, True, NOON - timedelta(days=1)),
    ):
        FollowUp.objects.create(
            patient=patient,
            kind=FollowUpKind.AUTOMATIC,
            status=FollowUpStatus.SCHEDULED,
            due_at=sent,
            sent_at=sent,
            responded_at=sent + timedelta(hours=1) if answered else None,
        )

    stranger = make_patient(org=b)
    theirs = message_for(stranger)
    deliver(theirs, status=DeliveryStatus.SENT, minute=0, late=500)
    for minute in range(3):
        deliver(theirs, status=DeliveryStatus.FAILED, minute=minute + 1)
    CheckIn.objects.create(
        patient=stranger,
        local_date=DAY,
        due_at=NOON,
        window_ends_at=NOON,
        status=CheckInStatus.SCHEDULED,
    )
    return a, b


def test_the_figures_match_the_days_deliveries_and_answers(clinics):
    a, b = clinics

    report_a, report_b = daily_reports([a, b], DAY)

    assert report_a.channels["telegram"].by_status == {
        "queued": 0,
        "sending": 0,
        "sent": 7,
        "failed": 1,
        "cancelled": 1,
        "expired": 0,
    }
    assert report_a.channels["telegram"].failure_rate == 0.125  # 1 of 8 with an outcome
    assert report_a.channels["sms"].by_status["sent"] == 1
    assert report_a.channels["sms"].failure_rate == 0.5
    assert report_a.all_channels.total == 11
    assert report_a.all_channels.failure_rate == 0.2  # failed + expired of 10
    # Lateness of the 8 sent: 0, 0, 0, 0, 10, 20, 30, 40 s.
    assert report_a.lateness_median_seconds == 5.0
    assert report_a.lateness_p95_seconds == 36.5  # 30 + 0.65 * (40 - 30)
    # Four doses sent, one snoozed (its repeat counts): 2 taken of 3.
    assert (report_a.doses_due, report_a.doses_taken, report_a.doses_missed) == (3, 2, 1)
    assert report_a.adherence == 0.6667
    assert (report_a.check_ins, report_a.check_ins_answered) == (3, 1)
    assert (report_a.follow_ups, report_a.follow_ups_answered) == (2, 1)
    assert report_a.follow_up_response_rate == 0.5

    assert report_b.all_channels.total == 4 and report_b.all_channels.failure_rate == 0.75
    assert report_b.lateness_median_seconds == 500.0
    assert (report_b.check_ins, report_b.doses_due) == (1, 0)


def read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_api_csv_has_only_the_tokens_organizations(client, clinics, admin_user):
    a, b = clinics
    provider = provider_create(organization_slug=a.slug, username="nurse", new_token=True)
    from patients.api_tokens import api_token_issue

    own = client.get(
        f"/api/scheduler/reports/daily.csv?date={DAY}", HTTP_AUTHORIZATION=f"Token {provider.token}"
    )
    every = client.get(
        f"/api/scheduler/reports/daily.csv?date={DAY}",
        HTTP_AUTHORIZATION=f"Token {api_token_issue(admin_user)}",
    )

    assert own.status_code == 200 and own["Content-Type"] == "text/csv"
    rows = read_csv(own.content.decode())
    assert {row["organization"] for row in rows} == {a.slug}
    assert [row["channel"] for row in rows] == ["all", "telegram", "sms"]
    summary = rows[0]
    assert (summary["deliveries"], summary["sent"], summary["failure_rate"]) == ("11", "8", "0.2")
    assert (summary["adherence"], summary["check_in_response_rate"]) == ("0.6667", "0.3333")
    assert "Patient" not in own.content.decode() and "Take 5 mg" not in own.content.decode()
    assert {row["organization"] for row in read_csv(every.content.decode())} == {a.slug, b.slug}


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("2026-13-01", "is not a date"),
        ("yesterday", "is not a date"),
        ("20260310", "YYYY-MM-DD"),
        ("2999-01-01", "in the future"),
        ("0001-01-01", "before 2000-01-01"),
    ],
)
def test_a_bad_date_is_a_400_naming_it(client, organization, given, words):
    provider = provider_create(organization_slug=organization.slug, username="n", new_token=True)

    response = client.get(
        f"/api/scheduler/reports/daily.csv?date={given}",
        HTTP_AUTHORIZATION=f"Token {provider.token}",
    )

    assert response.status_code == 400
    assert words in str(response.json()["date"])


def test_the_admin_gives_a_clinic_admin_their_own_organization_only(client, clinics):
    a, b = clinics
    provider_create(organization_slug=a.slug, username="lead", admin=True)
    client.force_login(User.objects.get(username="lead"))
    url = "/admin/patients/organization/daily-report/"

    page = client.get(url, {"date": str(DAY)})
    action = client.post(
        "/admin/patients/organization/",
        {"action": "yesterdays_report", "_selected_action": [a.pk, b.pk]},
    )
    bad = client.get(url, {"date": "10.03.2026"})

    assert {row["organization"] for row in read_csv(page.content.decode())} == {a.slug}
    assert read_csv(page.content.decode())[0]["deliveries"] == "11"
    assert action["Content-Type"] == "text/csv"
    assert {row["organization"] for row in read_csv(action.content.decode())} == {a.slug}
    assert bad.status_code == 200 and "Give the date as YYYY-MM-DD" in bad.content.decode()


def test_each_clinics_admins_get_their_report_once(clinics, broker):
    a, b = clinics
    for username, org, role, email in (
        ("a-lead", a, Role.ADMIN, "lead@a.example"),
        ("a-nurse", a, Role.STAFF, "nurse@a.example"),
        ("b-lead", b, Role.ADMIN, "lead@b.example"),
    ):
        user = User.objects.create_user(username, email=email, password=None)
        Membership.objects.create(user=user, organization=org, role=role)

    sent = send_daily_reports(day=DAY)
    again = send_daily_reports(day=DAY)

    assert (sent, again) == (2, 0)
    by_recipient = {tuple(message.to): message for message in mail.outbox}
    assert set(by_recipient) == {("lead@a.example",), ("lead@b.example",)}
    to_a = by_recipient[("lead@a.example",)]
    assert to_a.subject == f"Daily report: {a.name}, {DAY}"
    assert "deliveries: 11" in to_a.body and "adherence: 0.6667" in to_a.body
    [(filename, attached, kind)] = to_a.attachments
    assert kind == "text/csv" and filename.endswith(f"{a.slug}-{DAY}.csv")
    assert {row["organization"] for row in read_csv(attached)} == {a.slug}
    for message in mail.outbox:  # aggregates only
        assert "Patient" not in message.body and "Take 5 mg" not in message.body


def test_a_report_the_mail_server_refused_goes_on_the_next_run(clinics, broker, settings):
    import socket

    a, _ = clinics
    user = User.objects.create_user("a-lead", email="lead@a.example", password=None)
    Membership.objects.create(user=user, organization=a, role=Role.ADMIN)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", closed, 2

    refused = send_daily_reports(day=DAY)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    later = send_daily_reports(day=DAY)

    assert (refused, later) == (0, 1)
    assert [message.to for message in mail.outbox] == [["lead@a.example"]]


def test_the_accept_header_chooses_and_format_is_not_read(client, organization):
    provider = provider_create(organization_slug=organization.slug, username="n", new_token=True)
    auth = {"HTTP_AUTHORIZATION": f"Token {provider.token}"}

    csv_asked = client.get(
        "/api/scheduler/reports/daily.csv?format=xml", HTTP_ACCEPT="text/csv", **auth
    )
    bad_as_csv = client.get(
        "/api/scheduler/reports/daily.csv?date=soon", HTTP_ACCEPT="text/csv", **auth
    )

    assert csv_asked.status_code == 200 and csv_asked["Content-Type"] == "text/csv"
    assert csv_asked.content.decode().startswith("date,organization,channel,deliveries")
    assert bad_as_csv.status_code == 400
    assert bad_as_csv.content.decode().startswith("date,\"'soon' is not a date")


def test_each_report_query_reads_a_bounding_index(clinics):
    """With sequential scans priced out, every read of deliveries, check-ins and
    follow-ups goes through an index with a condition on the day (or the patient), so a
    day's report reads that day's rows."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        daily_reports(list(clinics), DAY)
    assert len(captured.captured_queries) == 5

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        for query in captured.captured_queries:
            cursor.execute(f"EXPLAIN {query['sql']}")
            plan = [row[0] for row in cursor.fetchall()]
            text = "\n".join(plan)
            for table in ("scheduling_delivery", "outreach_checkin", "outreach_followup"):
                assert f"Seq Scan on {table}" not in text, text
            scans = [
                i
                for i, line in enumerate(plan)
                if re.search(r"Index Scan using \S+ on (scheduling_delivery|outreach_)", line)
            ]
            assert scans, text
            for i in scans:  # the line after an index scan is its condition
                assert "Index Cond" in plan[i + 1], text
