"""The control panel: /api/scheduler/status/ (operators only), the database's view of
sending, the /ops/ page and its diagnostics against the fake providers."""

import re
import socket
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from operations.delivery_activity import delivery_activity
from operations.diagnostics import DIAGNOSTICS, run_diagnostic
from patients.provisioning import provider_create
from scheduling.models import Delivery, DeliveryStatus
from scheduling.services import message_schedule
from tests.conftest import from_now
from tests.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from tests.fakes.whatsapp_server import FakeWhatsApp

TELEGRAM_TOKEN = "123456:TEST-TOKEN"


@pytest.fixture
def operator(db):
    user = User.objects.create_superuser("root", email="root@example.org", password=None)
    return user


@pytest.fixture
def operator_token(operator):
    from patients.api_tokens import api_token_issue

    return api_token_issue(operator)


def make_deliveries(patient, rows):
    """rows: (status, channel, occurrence seconds ago, sent seconds ago or None)."""
    message = message_schedule(patient=patient, content="x", starts_at=from_now(3600))
    made = []
    for status, channel, occurred, sent in rows:
        at = timezone.now() - timedelta(seconds=occurred)
        made.append(
            Delivery.objects.create(
                message=message,
                occurrence_at=at,
                channel=channel,
                status=status,
                next_attempt_at=at,
                expires_at=at + timedelta(hours=1),
                sent_at=None if sent is None else timezone.now() - timedelta(seconds=sent),
            )
        )
    return made


# --- The status API ---------------------------------------------------------------------


def test_operators_get_every_section_of_the_status(client, operator_token, patient):
    make_deliveries(patient, [(DeliveryStatus.SENT, "telegram", 100, 90)])

    response = client.get("/api/scheduler/status/", HTTP_AUTHORIZATION=f"Token {operator_token}")

    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {
        "health",
        "beat",
        "workers",
        "channels",
        "database_activity",
        "open_incidents",
        "recent_job_runs",
    }
    assert set(body["health"]["checks"]) == {"database", "redis", "beat", "workers"}
    assert body["database_activity"]["sent_last_hour"] == 1
    assert {row["channel"] for row in body["channels"]["channels"]} >= {"telegram", "sms"}
    assert body["open_incidents"] == [] and body["recent_job_runs"] == []


def test_the_status_lists_open_incidents_and_each_jobs_latest_run(client, operator, operator_token):
    from operations.models import Incident, JobRun

    now = timezone.now()
    Incident.objects.create(
        rule_key="failure_rate:telegram",
        severity="critical",
        summary="telegram failing",
        value=0.5,
        threshold=0.05,
        opened_at=now - timedelta(minutes=3),
    )
    Incident.objects.create(
        rule_key="beat_stale",
        severity="critical",
        summary="over",
        opened_at=now - timedelta(hours=2),
        resolved_at=now - timedelta(hours=1),
    )
    for minutes, outcome in ((30, "ok"), (5, "failed")):
        JobRun.objects.create(
            job="scheduling.reap_stuck_deliveries",
            started_at=now - timedelta(minutes=minutes),
            finished_at=now,
            duration_ms=12,
            outcome=outcome,
            error="OperationalError: gone" if outcome == "failed" else "",
        )

    body = client.get("/api/scheduler/status/", HTTP_AUTHORIZATION=f"Token {operator_token}").json()

    assert [i["rule_key"] for i in body["open_incidents"]] == ["failure_rate:telegram"]
    assert body["open_incidents"][0]["value"] == 0.5
    [run] = body["recent_job_runs"]
    assert run["job"] == "scheduling.reap_stuck_deliveries" and run["outcome"] == "failed"
    client.force_login(operator)
    page = client.get("/ops/").content.decode()
    assert "failure_rate:telegram" in page and "beat_stale" not in page
    assert "OperationalError: gone" in page


def test_a_clinics_token_gets_403_and_no_token_401(client, organization):
    provider = provider_create(
        organization_slug=organization.slug, username="nurse", admin=True, new_token=True
    )

    clinic = client.get("/api/scheduler/status/", HTTP_AUTHORIZATION=f"Token {provider.token}")
    anonymous = client.get("/api/scheduler/status/")

    assert clinic.status_code == 403
    assert "operators" in clinic.json()["detail"]
    assert anonymous.status_code == 401


def test_the_status_is_in_the_openapi_schema(admin_client):
    schema = admin_client.get("/api/scheduler/schema/?format=json").json()

    operation = schema["paths"]["/api/scheduler/status/"]["get"]
    assert {"200", "403"} <= set(operation["responses"])
    assert "/api/scheduler/reports/daily.csv" in schema["paths"]


# --- Database activity ------------------------------------------------------------------


def test_database_activity_counts_the_sends_of_the_last_hour(patient):
    make_deliveries(
        patient,
        [
            (DeliveryStatus.SENT, "telegram", 130, 125),
            (DeliveryStatus.SENT, "telegram", 130, 122),
            (DeliveryStatus.SENT, "telegram", 600, 590),
            (DeliveryStatus.SENT, "sms", 5000, 4000),  # sent more than an hour ago
            (DeliveryStatus.FAILED, "telegram", 300, None),
            (DeliveryStatus.EXPIRED, "sms", 200, None),
            (DeliveryStatus.QUEUED, "telegram", 900, None),
            (DeliveryStatus.QUEUED, "sms", 60, None),
            (DeliveryStatus.SENDING, "telegram", 40, None),
        ],
    )
    now = timezone.now()

    activity = delivery_activity(now=now)

    assert 121 <= activity["last_sent_age_seconds"] <= 130
    assert activity["sent_last_hour"] == 3
    assert len(activity["sent_per_minute"]) == 60
    assert sum(row["sent"] for row in activity["sent_per_minute"]) == 3
    assert 899 <= activity["oldest_queued"]["age_seconds"] <= 910
    assert 39 <= activity["oldest_sending"]["age_seconds"] <= 50
    rates = activity["failure_rate_by_channel"]
    assert rates["telegram"] == {"sent": 3, "failed": 1, "expired": 0, "failure_rate": 0.25}
    # The SMS sent 4,000 s ago was due before the hour: only the expired one counts.
    assert rates["sms"]["failure_rate"] == 1.0


def test_database_activity_reads_only_through_bounding_indexes(patient):
    """With sequential scans priced out, each query reads the index that bounds it: the
    sends through delivery_sent_idx (the last hour of sent_at), the oldest and the rates
    through (status, occurrence_at). Its cost follows the hour's rows, not the table."""
    make_deliveries(patient, [(DeliveryStatus.SENT, "telegram", 100, 90)])
    with CaptureQueriesContext(connection) as captured:
        delivery_activity()
    reads = [q["sql"] for q in captured.captured_queries if "scheduling_delivery" in q["sql"]]
    expected = ["delivery_sent_idx", "delivery_sent_idx", STATUS_INDEX, STATUS_INDEX, STATUS_INDEX]
    assert len(reads) == len(expected)  # last send, per minute, oldest x2, failure rates

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        for sql, index in zip(reads, expected, strict=True):
            cursor.execute(f"EXPLAIN {sql}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert "Seq Scan on scheduling_delivery" not in plan, plan
            assert index in plan, plan


STATUS_INDEX = "scheduling__status_c9e325_idx"  # (status, occurrence_at)


# --- The page ---------------------------------------------------------------------------


def test_the_page_shows_the_sections_to_operators_only(client, operator, organization):
    client.force_login(operator)
    page = client.get("/ops/")

    assert page.status_code == 200
    text = page.content.decode()
    for heading in (
        "Health:",
        "Channels",
        "Database activity",
        "Open incidents",
        "Recent job runs",
        "Diagnostics",
    ):
        assert heading in text
    assert "<script" not in text and "style=" not in text  # the CSP allows neither inline

    staff = User.objects.create_user("staff", password=None, is_staff=True)
    client.force_login(staff)
    assert client.get("/ops/").status_code == 302  # to the login page
    assert client.post("/ops/diagnostics/", {"name": "database"}).status_code == 302


def test_a_diagnostic_needs_a_post_with_the_csrf_token(operator):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)

    assert client.get("/ops/diagnostics/").status_code == 405
    assert client.post("/ops/diagnostics/", {"name": "database"}).status_code == 403
    page = client.get("/ops/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
    answered = client.post("/ops/diagnostics/", {"name": "database", "csrfmiddlewaretoken": token})
    assert answered.status_code == 200
    assert "SELECT 1 in" in answered.content.decode()


def test_an_unknown_diagnostic_is_a_400_naming_it(client, operator):
    client.force_login(operator)

    response = client.post("/ops/diagnostics/", {"name": "format_disk"})

    assert response.status_code == 400
    assert "format_disk" in response.content.decode()


def test_every_diagnostic_has_a_button(client, operator):
    client.force_login(operator)
    page = client.get("/ops/").content.decode()

    for name in [*DIAGNOSTICS, "all"]:
        assert f'name="name" value="{name}"' in page


# --- Diagnostics against the fake providers ---------------------------------------------


def test_telegram_get_me_and_webhook_info_through_the_fake(client, operator, fake_telegram):
    client.force_login(operator)

    page = client.post("/ops/diagnostics/", {"name": "all"}).content.decode()

    assert "@fake_bot (id 42)" in page
    assert "none (polling)" in page
    assert {call.method for call in fake_telegram.calls("getMe")} == {"getMe"}
    assert fake_telegram.calls("getWebhookInfo")
    assert TELEGRAM_TOKEN not in page and "TEST-TOKEN" not in page


def test_the_webhook_diagnostic_shows_the_url_without_its_query(fake_telegram):
    import requests

    requests.post(
        f"{fake_telegram.base_url}/bot{TELEGRAM_TOKEN}/setWebhook",
        data={"url": "https://clinic.example.org/telegram/webhook/?k=secret"},
        timeout=5,
    )

    result = run_diagnostic("telegram_webhook")

    assert result.ok and result.how == "live"
    assert "https://clinic.example.org/telegram/webhook/" in result.detail
    assert "secret" not in result.detail


def test_a_token_telegram_refuses_is_reported_without_it(settings):
    from tests.fakes.telegram_server import FakeTelegram

    fake = FakeTelegram(bot_token=TELEGRAM_TOKEN).start()
    try:
        settings.TELEGRAM_API_BASE_URL = fake.base_url
        settings.TELEGRAM_BOT_TOKEN = "999:REVOKED-TOKEN"
        result = run_diagnostic("telegram_get_me")
    finally:
        fake.stop()

    assert not result.ok and result.how == "live"
    assert result.detail == "HTTP 401: Unauthorized"


def test_telegram_down_is_reported_without_the_token(settings):
    settings.TELEGRAM_BOT_TOKEN = TELEGRAM_TOKEN
    settings.TELEGRAM_API_BASE_URL = f"http://127.0.0.1:{closed_port()}"

    result = run_diagnostic("telegram_get_me")

    assert not result.ok
    assert result.detail == "no answer (ConnectionError)"


def test_twilio_is_checked_with_an_authenticated_call(settings):
    fake = FakeTwilio().start()
    try:
        settings.TWILIO_API_BASE_URL = fake.base_url
        settings.TWILIO_ACCOUNT_SID, settings.TWILIO_FROM_NUMBER = ACCOUNT_SID, "+15550001111"
        settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
        good = run_diagnostic("twilio")
        settings.TWILIO_AUTH_TOKEN = "wrong-token"
        bad = run_diagnostic("twilio")
    finally:
        fake.stop()

    assert good.ok and good.how == "live" and "account active" in good.detail
    assert not bad.ok and bad.detail.startswith("HTTP 401")
    assert "wrong-token" not in bad.detail and AUTH_TOKEN not in good.detail


def test_whatsapp_is_checked_with_an_authenticated_call(settings):
    fake = FakeWhatsApp().start()
    try:
        settings.WHATSAPP_API_BASE_URL = fake.base_url
        settings.WHATSAPP_PHONE_NUMBER_ID, settings.WHATSAPP_TOKEN = "1055", "EAAG-secret"
        result = run_diagnostic("whatsapp")
    finally:
        fake.stop()

    assert result.ok and result.how == "live"
    assert "Test Clinic" in result.detail and "EAAG" not in result.detail


def test_missing_provider_settings_are_named(settings):
    settings.WHATSAPP_TOKEN = settings.TWILIO_ACCOUNT_SID = ""

    whatsapp, twilio = run_diagnostic("whatsapp"), run_diagnostic("twilio")

    assert not whatsapp.ok and whatsapp.how == "configuration"
    assert "WHATSAPP_TOKEN" in whatsapp.detail
    assert "TWILIO_ACCOUNT_SID" in twilio.detail


def test_email_is_configuration_only_without_smtp_and_live_with_it(settings):
    locmem = run_diagnostic("email")  # the test settings' backend
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", closed_port()
    settings.EMAIL_HOST_PASSWORD = "smtp-secret"
    refused = run_diagnostic("email")

    assert locmem.ok and locmem.how == "configuration" and "sends nowhere" in locmem.detail
    assert not refused.ok and refused.how == "live"
    assert "ConnectionRefusedError" in refused.detail and "smtp-secret" not in refused.detail


def test_round_trips_report_milliseconds(db):
    database, redis = run_diagnostic("database"), run_diagnostic("redis")

    assert database.ok and database.milliseconds is not None
    assert redis.ok and redis.milliseconds is not None


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.django_db(transaction=True)
def test_the_page_and_a_diagnostic_work_in_a_browser_under_the_policy(
    live_server, tmp_path, monkeypatch
):
    """Chromium signs in, opens /ops/, runs a diagnostic with its button (a POST with the
    CSRF token) and sees the result; the Content-Security-Policy refuses nothing."""
    import os

    from playwright.sync_api import expect, sync_playwright

    from tests.test_web_ui_browser import CHROMIUM

    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run deploy/ensure-chromium.sh (as root) first.")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    User.objects.create_superuser("root", password="correct horse battery staple")
    refused: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.set_default_timeout(15_000)
        page.on("console", lambda m: refused.append(m.text) if "Content Security" in m.text else 0)
        try:
            page.goto(f"{live_server.url}/admin/login/?next=/ops/")
            page.get_by_label("Username").fill("root")
            page.get_by_label("Password").fill("correct horse battery staple")
            page.get_by_role("button", name="Log in").click()
            expect(page.get_by_role("heading", name="Control panel")).to_be_visible()

            page.get_by_role("button", name="Database round trip").click()

            expect(page.get_by_role("heading", name="Diagnostic results")).to_be_visible()
            expect(page.get_by_text("SELECT 1 in")).to_be_visible()
            page.screenshot(path=tmp_path / "ops.png", full_page=True)
        finally:
            browser.close()
            connections.close_all()  # Playwright switches contexts (test_web_ui_browser)
    assert refused == []
