"""The care teams' web UI at /scheduled-messages/: pages, forms and organization scoping."""

import html
import re
from datetime import UTC, date, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from care_team.web.chart import stacked_bars
from care_team.web.queries import deliveries_per_day
from patients.models import Membership, Organization
from scheduling.models import (
    AttemptOutcome,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    MessageStatus,
    ScheduledMessage,
)
from scheduling.phrases import PhraseError, parse_schedule
from scheduling.services import message_schedule
from tests.conftest import from_now

PASSWORD = "correct horse battery staple"
LIST = "/scheduled-messages/"
CREATE = "/scheduled-messages/new/"
PREVIEW = "/scheduled-messages/preview/"
CHART = "/scheduled-messages/activity/"
LOGIN = "/scheduled-messages/login/"


def detail(message) -> str:
    return f"/scheduled-messages/{message.pk}/"


def provider_in(organization, username: str) -> User:
    user = User.objects.create_user(username, password=PASSWORD)
    Membership.objects.create(user=user, organization=organization)
    return user


@pytest.fixture
def provider(organization):
    return provider_in(organization, "nurse-a")


@pytest.fixture
def web(client, provider):
    client.force_login(provider)
    return client


@pytest.fixture
def clinic_b(db):
    return Organization.objects.create(name="Clinic B", slug="clinic-b")


def schedule(patient, content="Time for your check-in.", **options):
    options.setdefault("starts_at", from_now(3600))
    return message_schedule(patient=patient, content=content, **options)


def make_delivery(message, at, status=DeliveryStatus.SENT, **fields) -> Delivery:
    return Delivery.objects.create(
        message=message,
        occurrence_at=at,
        channel=message.channel,
        status=status,
        next_attempt_at=at,
        expires_at=at + timedelta(hours=1),
        **fields,
    )


def create_form(patient, **fields) -> dict:
    blank = dict.fromkeys(["template", "parameters", "content", "when", "send_at", "channel"], "")
    return {**blank, "patient": patient.pk, "format": "text", "priority": "3", **fields}


def field_errors(response, field: str) -> str:
    """The error list Django renders next to a field (id="id_<field>_error")."""
    found = re.search(
        rf'<ul class="errorlist" id="id_{field}_error">(.*?)</ul>', response.content.decode(), re.S
    )
    return html.unescape(found.group(1)) if found else ""


# -- Login -------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [LIST, CREATE, PREVIEW, CHART, "/scheduled-messages/1/"])
def test_every_page_sends_an_anonymous_visitor_to_the_web_login(client, db, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(f"{LOGIN}?next=")


def test_an_anonymous_post_changes_nothing(client, patient):
    message = schedule(patient)
    response = client.post(f"{detail(message)}cancel/")
    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN)
    message.refresh_from_db()
    assert message.status == MessageStatus.ACTIVE


def test_a_provider_logs_in_and_lands_where_they_were_going(client, provider):
    response = client.post(LOGIN, {"username": "nurse-a", "password": PASSWORD, "next": CHART})
    assert response.status_code == 302
    assert response["Location"] == CHART
    client.logout()
    response = client.post(LOGIN, {"username": "nurse-a", "password": PASSWORD})
    assert response["Location"] == LIST
    assert client.get(f"{LOGIN}?next={LOGIN}").status_code == 200  # no redirect loop


def test_a_wrong_password_shows_the_login_form_again(client, provider):
    response = client.post(LOGIN, {"username": "nurse-a", "password": "nope"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_logging_out_needs_a_post_and_ends_the_session(web):
    response = web.post("/scheduled-messages/logout/")
    assert response.status_code == 302
    assert response["Location"] == LOGIN
    assert web.get(LIST).status_code == 302


# -- List and filters ----------------------------------------------------------------------


def test_the_list_shows_messages_with_status_badges_and_local_times(web, make_patient):
    berlin = make_patient(zone="Europe/Berlin")
    active = schedule(berlin, starts_at=datetime(2099, 1, 15, 7, 30, tzinfo=UTC))
    paused = schedule(berlin)
    ScheduledMessage.objects.filter(pk=paused.pk).update(status=MessageStatus.PAUSED)

    page = web.get(LIST)
    shown = page.content.decode()
    assert page.status_code == 200
    assert f'href="{detail(active)}"' in shown and f'href="{detail(paused)}"' in shown
    assert '<span class="badge badge-active">Active</span>' in shown
    assert '<span class="badge badge-paused">Paused</span>' in shown
    assert "Thu 2099-01-15 08:30 CET" in shown  # 07:30 UTC, read in Berlin
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in shown


def test_the_list_filters_by_status_patient_and_channel(web, make_patient):
    first, second = make_patient(), make_patient(chat_id=None)
    on_telegram = schedule(first)
    cancelled = schedule(first)
    ScheduledMessage.objects.filter(pk=cancelled.pk).update(status=MessageStatus.CANCELLED)
    on_web = schedule(second)
    assert on_web.channel == "web"

    def listed(**query) -> set[int]:
        page = web.get(LIST, query)
        assert page.status_code == 200
        return {int(pk) for pk in re.findall(r'href="/scheduled-messages/(\d+)/"', page.text)}

    everything = {on_telegram.pk, cancelled.pk, on_web.pk}
    assert listed() == everything
    assert listed(status="cancelled") == {cancelled.pk}
    assert listed(patient=second.pk) == {on_web.pk}
    assert listed(channel="telegram") == {on_telegram.pk, cancelled.pk}
    assert listed(status="active", channel="telegram", patient=first.pk) == {on_telegram.pk}


def test_the_list_pages_through_fifty_at_a_time_keeping_its_filters(web, patient):
    for _ in range(51):
        schedule(patient)
    first = web.get(LIST, {"status": "active"})
    assert first.text.count('<span class="badge badge-active">') == 50
    assert 'href="?status=active&amp;page=2"' in first.text
    second = web.get(LIST, {"status": "active", "page": 2})
    assert second.text.count('<span class="badge badge-active">') == 1


@pytest.mark.parametrize(
    "query",
    [
        {"status": "nonsense"},
        {"channel": "pigeon"},
        {"patient": "abc"},
        {"patient": "99999999999999999999"},
        {"page": "-1"},
        {"status": "a\x00b"},
    ],
)
def test_odd_filter_values_are_answered_not_crashed_on(web, patient, query):
    schedule(patient)
    assert web.get(LIST, query).status_code == 200


# -- Creating ------------------------------------------------------------------------------


def test_creating_with_text_and_a_phrase_saves_a_recurring_message(web, patient):
    response = web.post(
        CREATE, create_form(patient, content="Time for your check-in.", when="daily at 08:00")
    )
    message = ScheduledMessage.objects.get()
    assert response.status_code == 302
    assert response["Location"] == detail(message)
    assert message.patient == patient
    assert message.content == "Time for your check-in."
    assert message.recurrence == "FREQ=DAILY;BYHOUR=8;BYMINUTE=0"
    assert message.status == MessageStatus.ACTIVE
    assert message.metadata == {"source": "web"}
    assert message.next_run_at.astimezone(patient.zone).strftime("%H:%M") == "08:00"
    page = web.get(response["Location"])
    assert f"Message #{message.pk} scheduled." in page.text


def test_creating_with_a_date_reads_it_in_the_patients_local_time(web, make_patient):
    patient = make_patient(zone="America/New_York")
    year = timezone.now().year + 1
    web.post(
        CREATE,
        create_form(patient, content="Your results are ready.", send_at=f"{year}-01-15T09:30"),
    )
    message = ScheduledMessage.objects.get()
    assert message.recurrence == ""
    assert message.starts_at == datetime(year, 1, 15, 14, 30, tzinfo=UTC)  # EST is UTC-5


def test_creating_from_a_template_renders_it_for_the_patient(web, patient):
    response = web.post(
        CREATE,
        create_form(
            patient,
            template="appointment_reminder",
            parameters="date=2099-01-02\r\ntime=10:00",
            when="tomorrow 09:00",
        ),
    )
    assert response.status_code == 302
    message = ScheduledMessage.objects.get()
    assert message.content == (
        f"Hello {patient.name}, a reminder of your appointment on 2099-01-02 at 10:00."
    )
    assert message.metadata["template"] == "appointment_reminder"


def test_the_form_offers_templates_with_the_parameters_they_need(web):
    page = web.get(CREATE)
    assert page.status_code == 200
    assert '<option value="appointment_reminder">appointment_reminder (date, time)</option>' in (
        page.text
    )


@pytest.mark.parametrize(
    ("fields", "field", "expected"),
    [
        ({"content": "Hi", "when": "dialy 08:00"}, "when", 'unknown word "dialy"'),
        ({"content": "Hi"}, "when", "Give a phrase, or a date"),
        (
            {"content": "Hi", "when": "daily at 08:00", "send_at": "2099-01-01T08:00"},
            "when",
            "one of them",
        ),
        ({"content": "Hi", "send_at": "2099-13-45T99:99"}, "send_at", "Give a date and time"),
        (
            {"content": "Hi", "send_at": "2001-01-01T08:00"},
            "send_at",
            "no occurrence still to send",
        ),
        ({"when": "daily at 08:00"}, "content", "Choose a template or write the text"),
        (
            {"content": "<div>Hi</div>", "format": "html", "when": "daily at 08:00"},
            "content",
            "HTML not accepted",
        ),
        (
            {
                "template": "appointment_reminder",
                "parameters": "date=2099-01-02",
                "when": "daily at 08:00",
            },
            "parameters",
            "needs: time",
        ),
        (
            {"template": "check_in", "parameters": "just words", "when": "daily at 08:00"},
            "parameters",
            "name=value",
        ),
        (
            {"content": "Hi", "when": "daily at 08:00", "channel": "sms"},
            "channel",
            "no verified, unblocked sms contact",
        ),
        ({"content": "Hi", "when": "every 1 second"}, "when", "Could not understand"),
    ],
)
def test_an_error_is_shown_next_to_its_field_and_nothing_is_saved(
    web, patient, fields, field, expected
):
    response = web.post(CREATE, create_form(patient, **fields))
    assert response.status_code == 200
    assert expected in field_errors(response, field)
    assert not ScheduledMessage.objects.exists()


def test_a_patient_who_opted_out_gets_nothing_and_the_form_says_why(web, patient):
    patient.opted_out_at = timezone.now()
    patient.save()
    response = web.post(CREATE, create_form(patient, content="Hi", when="daily at 08:00"))
    assert "opted out" in field_errors(response, "patient")
    assert not ScheduledMessage.objects.exists()


@pytest.mark.parametrize(
    "fields",
    [
        {"patient": "abc"},
        {"patient": "99999999999999999999"},
        {"patient": ""},
        {"priority": "9"},
        {"priority": "x"},
        {"format": "pdf"},
        {"channel": "pigeon"},
        {"template": "no_such_template"},
        {"content": "a\x00b", "when": "daily at 08:00"},
        {"content": "Hi", "when": "x" * 600},
        {"content": "Hi", "when": "a\x00b"},
        {"content": "Hi", "send_at": "0001-01-01T00:00"},
        {"content": "Hi", "send_at": "9999-12-31T23:59"},
        {"content": "Hi", "when": "{"},
        {"content": "Hi", "when": "in 999999999 days"},
        {"content": "Hi", "when": "RRULE:FREQ="},
        {"content": "Hi" * 100_000, "when": "daily at 08:00"},
    ],
)
def test_no_input_gives_a_server_error(web, patient, fields):
    response = web.post(CREATE, {**create_form(patient), **fields})
    assert response.status_code == 200
    assert not ScheduledMessage.objects.exists()


# -- The live preview ----------------------------------------------------------------------


def test_the_preview_shows_the_next_five_times_in_the_patients_local_time(web, make_patient):
    patient = make_patient(zone="America/New_York")
    response = web.get(PREVIEW, {"patient": patient.pk, "when": "daily at 08:00"})
    assert response.status_code == 200
    times = re.findall(r'<time datetime="([^"]+)">([^<]+)</time>', response.text)
    assert len(times) == 5
    days = []
    for utc_text, local_text in times:
        assert re.fullmatch(r"\w{3} \d{4}-\d{2}-\d{2} 08:00 E[SD]T", local_text)
        local = datetime.fromisoformat(utc_text).astimezone(patient.zone)
        assert local.strftime("%Y-%m-%d %H:%M") == local_text[4:20]
        days.append(local.date())
    assert [later - earlier for earlier, later in zip(days, days[1:], strict=False)] == [
        timedelta(days=1)
    ] * 4
    assert "America/New_York" in response.text
    assert not ScheduledMessage.objects.exists()  # a preview saves nothing


def test_the_preview_shows_the_parsers_message_for_a_phrase_it_does_not_understand(web, patient):
    with pytest.raises(PhraseError) as raised:
        parse_schedule("dialy 08:00", zone_name=patient.timezone, now=timezone.now())
    response = web.get(PREVIEW, {"patient": patient.pk, "when": "dialy 08:00"})
    assert response.status_code == 400  # shown all the same: the page's htmx config swaps it
    assert html.escape(str(raised.value)) in response.text
    assert "<time" not in response.text


def test_the_preview_asks_for_a_patient_before_reading_the_phrase(web, db):
    response = web.get(PREVIEW, {"when": "daily at 08:00"})
    assert "Choose a patient" in response.text


def test_the_create_page_loads_htmx_from_our_own_static_files(web):
    page = web.get(CREATE)
    assert '<script src="/static/care_team/htmx.min.js"></script>' in page.text
    assert 'hx-get="/scheduled-messages/preview/"' in page.text


def test_the_form_shown_again_after_an_error_keeps_its_preview(web, patient):
    response = web.post(CREATE, create_form(patient, when="daily at 08:00"))  # no content
    assert len(re.findall(r"<time datetime=", response.text)) == 5


# -- Cancel and send now ---------------------------------------------------------------------


def test_cancel_stops_the_message_and_its_queued_deliveries(web, patient):
    message = schedule(patient)
    queued = make_delivery(message, from_now(-5), status=DeliveryStatus.QUEUED)
    response = web.post(f"{detail(message)}cancel/")
    assert response.status_code == 302
    assert response["Location"] == detail(message)
    message.refresh_from_db()
    queued.refresh_from_db()
    assert message.status == MessageStatus.CANCELLED
    assert message.next_run_at is None
    assert queued.status == DeliveryStatus.CANCELLED
    assert "cancelled" in web.get(detail(message)).text


def test_cancelling_twice_says_it_cannot(web, patient):
    message = schedule(patient)
    web.post(f"{detail(message)}cancel/")
    page = web.post(f"{detail(message)}cancel/", follow=True)
    assert "A cancelled message cannot be cancelled." in page.text


@pytest.mark.parametrize("action", ["cancel", "send-now"])
def test_actions_need_a_post_with_a_csrf_token(provider, patient, action):
    message = schedule(patient)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(provider)
    assert strict.get(f"{detail(message)}{action}/").status_code == 405
    assert strict.post(f"{detail(message)}{action}/").status_code == 403
    message.refresh_from_db()
    assert message.status == MessageStatus.ACTIVE
    assert not message.deliveries.exists()


def test_send_now_creates_a_delivery_and_queues_it(
    web, patient, broker, django_capture_on_commit_callbacks
):
    message = schedule(patient, recurrence="FREQ=DAILY")
    with django_capture_on_commit_callbacks(execute=True):
        response = web.post(f"{detail(message)}send-now/")
    delivery = Delivery.objects.get(message=message)
    assert response.status_code == 302
    assert delivery.status == DeliveryStatus.QUEUED
    assert broker.queue_length("deliver.telegram") == 1
    message.refresh_from_db()
    assert message.status == MessageStatus.ACTIVE  # a recurring message keeps its schedule
    assert f"Delivery #{delivery.pk} queued to send now." in web.get(detail(message)).text


def test_send_now_of_a_cancelled_message_is_refused_with_a_notice(web, patient, broker):
    message = schedule(patient)
    web.post(f"{detail(message)}cancel/")
    page = web.post(f"{detail(message)}send-now/", follow=True)
    assert "A cancelled message cannot be sent." in page.text
    assert not message.deliveries.exists()


# -- Delivery history and the chart ------------------------------------------------------------


def test_the_history_lists_deliveries_with_status_and_attempts(web, patient):
    message = schedule(patient, recurrence="FREQ=DAILY")
    at = datetime(2025, 3, 10, 7, 0, tzinfo=UTC)
    failed = make_delivery(
        message,
        at,
        status=DeliveryStatus.FAILED,
        attempts=2,
        error_code="chat_not_found",
        error_text="Bad Request: chat not found",
    )
    tries = [
        (1, AttemptOutcome.TRANSIENT, "timeout"),
        (2, AttemptOutcome.PERMANENT, "chat_not_found"),
    ]
    for number, outcome, code in tries:
        DeliveryAttempt.objects.create(
            delivery=failed,
            number=number,
            outcome=outcome,
            error_code=code,
            started_at=at,
            finished_at=at,
            duration_ms=120,
        )
    make_delivery(message, at + timedelta(days=1), sent_at=at + timedelta(days=1), attempts=1)

    page = web.get(detail(message))
    row = re.search(rf'<tr id="delivery-{failed.pk}">(.*?)</tr>', page.text, re.S).group(1)
    assert '<span class="badge badge-failed">Failed</span>' in row
    assert "<td>2</td>" in row
    assert "Mon 2025-03-10 08:00 CET" in row  # the patient's local time
    assert "attempt 1, 08:00:00: Transient error (timeout), 120 ms" in row
    assert "attempt 2, 08:00:00: Permanent error (chat_not_found)" in row
    assert "chat_not_found: Bad Request: chat not found" in row
    assert '<span class="badge badge-sent">Sent</span>' in page.text
    assert "2 deliveries" in page.text


def test_the_detail_page_shows_the_next_occurrences_of_an_active_message(web, patient):
    message = schedule(patient, recurrence="FREQ=DAILY;BYHOUR=8;BYMINUTE=0")
    page = web.get(detail(message))
    assert len(re.findall(r"<time datetime=", page.text)) == 5


def test_deliveries_per_day_counts_each_status_on_each_utc_day(provider, make_patient, clinic_b):
    mine, theirs = schedule(make_patient()), schedule(make_patient(org=clinic_b))
    today = date(2025, 3, 10)
    noon = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
    for seconds, status in ((1, "sent"), (2, "sent"), (3, "failed")):
        make_delivery(mine, noon + timedelta(seconds=seconds), status=status)
    make_delivery(mine, noon - timedelta(days=1), status="expired")
    make_delivery(mine, datetime(2025, 3, 10, 23, 59, tzinfo=UTC), status="queued")
    make_delivery(mine, noon - timedelta(days=14), status="sent")  # outside the 14 days
    make_delivery(theirs, noon, status="sent")  # another organization's

    days = deliveries_per_day(provider, today=today)
    assert [day.day for day in days] == [today - timedelta(days=n) for n in range(13, -1, -1)]
    by_day = {day.day: day.counts for day in days}
    assert by_day[today] == {
        "queued": 1,
        "sending": 0,
        "sent": 2,
        "failed": 1,
        "cancelled": 0,
        "expired": 0,
    }
    assert by_day[date(2025, 3, 9)]["expired"] == 1
    assert sum(day.total for day in days) == 5

    chart = stacked_bars(days)
    assert chart.peak == 4
    last = chart.bars[-1]
    assert [s.status for s in last.segments] == ["sent", "failed", "queued"]
    assert last.segments[-1].y == pytest.approx(0)  # the busiest day reaches the top


def test_the_chart_page_draws_the_organizations_deliveries(web, make_patient, clinic_b):
    mine, also_mine = schedule(make_patient()), schedule(make_patient())
    a_minute_ago = from_now(-60)
    make_delivery(mine, a_minute_ago, status="sent")
    make_delivery(also_mine, a_minute_ago, status="failed")
    make_delivery(schedule(make_patient(org=clinic_b)), a_minute_ago, status="sent")
    page = web.get(CHART)
    assert page.status_code == 200
    assert page.text.count("<tr data-day=") == 14
    assert page.text.count('<rect class="bar-sent"') == 1
    assert page.text.count('<rect class="bar-failed"') == 1
    assert "the busiest day had 2" in page.text


# -- Isolation between organizations -------------------------------------------------------


@pytest.fixture
def other_clinic(client, clinic_b, make_patient):
    """A provider of clinic B, logged in; clinic A (the `organization` fixture) has a
    patient and a message they must never see or touch."""
    client.force_login(provider_in(clinic_b, "nurse-b"))
    make_patient(org=clinic_b)
    return client


@pytest.mark.parametrize(
    ("method", "suffix"), [("get", ""), ("post", "cancel/"), ("post", "send-now/")]
)
def test_another_organizations_message_is_not_found(other_clinic, patient, method, suffix, broker):
    message = schedule(patient)
    response = getattr(other_clinic, method)(f"{detail(message)}{suffix}")
    assert response.status_code == 404
    message.refresh_from_db()
    assert message.status == MessageStatus.ACTIVE
    assert not message.deliveries.exists()


def test_another_organizations_messages_and_patients_never_appear(other_clinic, make_patient):
    theirs = make_patient()  # in clinic A
    message = schedule(theirs, content="Clinic A's secret")
    make_delivery(message, from_now(-60))
    for url in (LIST, CREATE, CHART, f"{LIST}?patient={theirs.pk}"):
        page = other_clinic.get(url)
        assert page.status_code == 200
        assert theirs.name not in page.text
        assert "Clinic A" not in page.text
        assert detail(message) not in page.text
    assert 'value="' + str(theirs.pk) + '"' not in other_clinic.get(CREATE).text
    assert "the busiest day had 0" in other_clinic.get(CHART).text


def test_another_organizations_patient_cannot_be_chosen_or_previewed(other_clinic, patient):
    response = other_clinic.post(CREATE, create_form(patient, content="Hi", when="daily 08:00"))
    assert "Select a valid choice" in field_errors(response, "patient")
    assert not ScheduledMessage.objects.exists()
    preview = other_clinic.get(PREVIEW, {"patient": patient.pk, "when": "daily at 08:00"})
    assert "Choose a patient" in preview.text
    assert "<time" not in preview.text
