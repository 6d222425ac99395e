"""Alerts: each rule at the shipped thresholds, incidents that open and resolve once, one
notice per target each time (with two evaluations at once too), and a failing target
that is recorded, retried and holds back no other. Real PostgreSQL and Redis, notices to
fake servers on 127.0.0.1 (webhook, Telegram) and a real SMTP server."""

import socket
import threading
import time
from datetime import timedelta
from email import message_from_bytes

import pytest
import redis
from aiosmtpd.controller import Controller
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError

from operations import alert_rules
from operations.alert_rules import (
    BacklogSamples,
    backlog_grew_throughout,
    backlog_growing,
    beat_stale,
    breakers_open,
    failure_rates,
    lateness_p95,
    queues_without_worker,
    worker_pools,
)
from operations.alerting import evaluate_alerts
from operations.models import (
    EventKind,
    Incident,
    IncidentEvent,
    IncidentNotification,
    NotificationStatus,
)
from scheduling.heartbeat import KEY as HEARTBEAT_KEY
from scheduling.models import AttemptOutcome, Delivery, DeliveryAttempt, DeliveryStatus
from scheduling.services import message_schedule
from tests.conftest import from_now
from tests.fakes.base import BaseReply
from tests.fakes.webhook_server import FakeWebhook
from tests.test_channels import Recorder
from tests.test_settings import start_up

OPS_CHAT = "-100777"
FAILURE_RULES = {"failure_rate": failure_rates}


@pytest.fixture(autouse=True)
def no_backlog_samples():
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    for key in client.scan_iter("alerts:*"):
        client.delete(key)


@pytest.fixture
def fake_webhook(settings):
    fake = FakeWebhook().start()
    settings.ALERT_WEBHOOK_URL = fake.url
    yield fake
    fake.stop()


@pytest.fixture
def ops_chat(settings, fake_telegram):
    settings.ALERT_TELEGRAM_CHAT_ID = OPS_CHAT
    settings.ALERT_TELEGRAM_BOT_TOKEN = settings.TELEGRAM_BOT_TOKEN
    return fake_telegram


@pytest.fixture
def smtp_server(settings):
    recorder = Recorder()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.ALERT_EMAILS = ["oncall@example.org"]
    yield recorder
    controller.stop()


def record_sends(patient, outcomes, *, minutes_ago: float = 1, channel: str = "telegram"):
    """One delivery per outcome, each with one finished attempt."""
    finished = timezone.now() - timedelta(minutes=minutes_ago)
    message = message_schedule(patient=patient, content="Take your tablets", starts_at=from_now(60))
    for number, outcome in enumerate(outcomes):
        delivery = Delivery.objects.create(
            message=message, occurrence_at=finished - timedelta(seconds=number), channel=channel,
            status=DeliveryStatus.SENT if outcome == AttemptOutcome.SENT else DeliveryStatus.QUEUED,
            next_attempt_at=finished, expires_at=finished + timedelta(hours=1),
        )  # fmt: skip
        DeliveryAttempt.objects.create(
            delivery=delivery, number=1, started_at=finished, finished_at=finished, outcome=outcome
        )
    return message


def failures(failed: int, total: int) -> list[str]:
    return [AttemptOutcome.TRANSIENT] * failed + [AttemptOutcome.SENT] * (total - failed)


def by_key(measurements):
    return {m.key: m for m in measurements}


# -- Failure rate, at the shipped thresholds (5 % of at least 20 sends in 15 min) ---------


def test_the_shipped_failure_thresholds_are_5_percent_of_20_sends_in_15_minutes(settings):
    assert (settings.ALERT_FAILURE_RATE, settings.ALERT_FAILURE_MIN_DELIVERIES) == (0.05, 20)
    assert settings.ALERT_WINDOW_MINUTES == 15
    assert settings.ALERT_EVALUATION_SECONDS == 60


def test_19_sends_all_failed_raise_no_alert(patient):
    record_sends(patient, failures(19, 19))

    rate = by_key(failure_rates())["failure_rate:telegram"]
    assert rate.value == 1.0
    assert not rate.firing


def test_20_sends_with_2_failed_fire_for_the_channel_and_the_organization(patient):
    record_sends(patient, failures(2, 20))

    measured = by_key(failure_rates())
    assert measured["failure_rate:telegram"].firing
    assert measured["failure_rate:telegram"].value == 0.1
    assert measured[f"failure_rate:org:{patient.organization_id}"].firing
    assert not measured["failure_rate:web"].firing
    assert "2 of 20 sends failed" in measured["failure_rate:telegram"].summary


def test_20_sends_with_1_failed_are_5_percent_which_is_not_above_it(patient):
    record_sends(patient, failures(1, 20))

    assert not by_key(failure_rates())["failure_rate:telegram"].firing


def test_sends_older_than_the_window_and_blocked_recipients_are_not_failures(patient):
    record_sends(patient, failures(20, 20), minutes_ago=16)
    record_sends(patient, [AttemptOutcome.BLOCKED] * 20 + [AttemptOutcome.TRANSIENT])

    rate = by_key(failure_rates())["failure_rate:telegram"]
    assert not rate.firing
    assert "1 of 21 sends failed" in rate.summary


# -- Breakers, Beat, backlog, lateness, workers --------------------------------------------


def set_breaker(channel: str, state: str, opened_minutes_ago: float) -> None:
    opened_at = int((time.time() - opened_minutes_ago * 60) * 1000)
    redis.Redis.from_url(django_settings.REDIS_URL).hset(
        f"breaker:{channel}", mapping={"state": state, "opened_at": opened_at, "until": 0}
    )


def test_the_failure_rate_reads_the_window_through_the_finished_at_index(patient):
    """With sequential scans priced out, both queries (per channel, per organization) read
    the attempts of the window through attempt_finished_idx: every minute's evaluation
    costs the window's rows, not a history of millions."""
    record_sends(patient, failures(1, 3))
    with CaptureQueriesContext(connection) as captured:
        alert_rules.failure_rates()
    reads = [
        q["sql"] for q in captured.captured_queries if "scheduling_deliveryattempt" in q["sql"]
    ]
    assert len(reads) == 2

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        for sql in reads:
            cursor.execute(f"EXPLAIN {sql}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert "Seq Scan on scheduling_deliveryattempt" not in plan, plan
            assert "attempt_finished_idx" in plan, plan


def test_a_breaker_open_5_minutes_fires_and_one_open_4_minutes_does_not(settings):
    assert settings.ALERT_BREAKER_OPEN_MINUTES == 5
    set_breaker("telegram", "open", 5.1)
    set_breaker("sms", "half_open", 4)

    measured = by_key(breakers_open())
    assert measured["breaker_open:telegram"].firing
    assert not measured["breaker_open:sms"].firing
    assert not measured["breaker_open:whatsapp"].firing  # never opened: closed


def test_a_breaker_that_closed_again_does_not_fire():
    set_breaker("telegram", "closed", 30)

    assert not by_key(breakers_open())["breaker_open:telegram"].firing


def test_a_dispatcher_tick_older_than_60_seconds_fires(settings):
    assert settings.ALERT_BEAT_STALE_SECONDS == 60
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    client.set(HEARTBEAT_KEY, f"{time.time() - 50:.3f}")
    assert not beat_stale()[0].firing
    client.set(HEARTBEAT_KEY, f"{time.time() - 65:.3f}")
    assert beat_stale()[0].firing


def test_with_no_tick_recorded_beat_is_stale_60_seconds_after_that_is_first_seen():
    redis.Redis.from_url(django_settings.REDIS_URL).delete(HEARTBEAT_KEY)
    now = time.time()

    assert not beat_stale(now)[0].firing
    assert not beat_stale(now + 60)[0].firing
    [stale] = beat_stale(now + 61)
    assert stale.firing and "no dispatcher tick recorded for 61 s" in stale.summary


def queue_deliveries(patient, count: int) -> None:
    message = message_schedule(patient=patient, content="x", starts_at=from_now(60))
    now = timezone.now()
    Delivery.objects.bulk_create(
        Delivery(message=message, occurrence_at=now - timedelta(seconds=n), channel="telegram",
                 next_attempt_at=now, expires_at=now + timedelta(hours=1))
        for n in range(count)
    )  # fmt: skip


def test_a_backlog_that_grew_for_10_minutes_fires(patient, settings):
    assert settings.ALERT_BACKLOG_GROWING_MINUTES == 10
    now = time.time()
    samples = BacklogSamples("telegram")
    for minute, backlog in zip(range(11, 0, -1), range(0, 11), strict=True):
        samples.add(backlog, now - minute * 60 - 5)  # 0 eleven minutes ago ... 10 a minute ago
    queue_deliveries(patient, 12)

    measured = by_key(backlog_growing(now))
    assert measured["backlog_growing:telegram"].firing
    assert measured["backlog_growing:telegram"].value == 12
    assert not measured["backlog_growing:web"].firing


def test_a_backlog_that_fell_once_or_grew_for_less_than_10_minutes_does_not_fire():
    start = 1_000_000.0
    grew = [(start - 60, 1), (start + 300, 5), (start + 600, 9)]
    assert backlog_grew_throughout(grew, start)
    fell = [(start - 60, 1), (start + 300, 0), (start + 600, 9)]
    assert not backlog_grew_throughout(fell, start)
    too_short = [(start + 300, 5), (start + 600, 9)]
    assert not backlog_grew_throughout(too_short, start)
    flat = [(start - 60, 9), (start + 600, 9)]
    assert not backlog_grew_throughout(flat, start)


def sent_late(patient, count: int, seconds_late: float) -> None:
    message = message_schedule(patient=patient, content="x", starts_at=from_now(60))
    due = timezone.now() - timedelta(minutes=5)
    Delivery.objects.bulk_create(
        Delivery(message=message, occurrence_at=due - timedelta(seconds=n), channel="telegram",
                 status=DeliveryStatus.SENT, sent_at=due - timedelta(seconds=n - seconds_late),
                 next_attempt_at=due, expires_at=due + timedelta(hours=1))
        for n in range(count)
    )  # fmt: skip


def test_deliveries_going_out_more_than_60_seconds_late_fire(patient, settings):
    assert settings.ALERT_LATENESS_P95_SECONDS == 60
    sent_late(patient, 20, seconds_late=61)

    lateness = by_key(lateness_p95())["lateness:telegram"]
    assert lateness.firing
    assert lateness.value == pytest.approx(61, abs=0.5)


def test_lateness_under_60_seconds_or_from_19_deliveries_does_not_fire(patient, make_patient):
    sent_late(patient, 19, seconds_late=300)
    assert not by_key(lateness_p95())["lateness:telegram"].firing
    Delivery.objects.all().delete()
    sent_late(patient, 20, seconds_late=30)
    sent_late(make_patient(), 1, seconds_late=600)  # one outlier in 21 is under 5 %
    lateness = by_key(lateness_p95())["lateness:telegram"]
    assert not lateness.firing
    assert lateness.value == pytest.approx(30, abs=0.5)


def test_deliveries_still_waiting_count_as_late_as_they_already_are(patient):
    message = message_schedule(patient=patient, content="x", starts_at=from_now(60))
    due = timezone.now() - timedelta(minutes=3)
    Delivery.objects.bulk_create(
        Delivery(message=message, occurrence_at=due - timedelta(seconds=n), channel="telegram",
                 next_attempt_at=due, expires_at=due + timedelta(hours=1))
        for n in range(20)
    )  # fmt: skip

    assert by_key(lateness_p95())["lateness:telegram"].firing


def test_a_queue_no_worker_consumes_fires():
    replies = {"w1@host": [{"name": "scheduler"}, {"name": "deliver.telegram"}]}
    assert queues_without_worker(["scheduler", "deliver.telegram", "outreach"], replies) == {
        "outreach"
    }
    assert queues_without_worker(["scheduler"], None) == {"scheduler"}


def test_with_no_worker_for_2_minutes_every_required_queue_fires(broker, settings):
    assert settings.ALERT_NO_WORKER_SECONDS == 120
    now = time.time()

    at_first = by_key(worker_pools(now))
    a_minute_on = by_key(worker_pools(now + 60))
    two_minutes_on = by_key(worker_pools(now + 120))

    assert set(at_first) == {f"no_worker:{q}" for q in settings.ALERT_WORKER_QUEUES}
    assert not any(m.firing for m in [*at_first.values(), *a_minute_on.values()])
    assert all(m.firing for m in two_minutes_on.values())


# -- Incidents and notices ----------------------------------------------------------------


def notices(fake_webhook, fake_telegram, smtp_server) -> dict[str, list[str]]:
    return {
        "webhook": [f"{b['status']} {b['incident']['rule']}" for b in fake_webhook.bodies()],
        "telegram": [c.params["text"] for c in fake_telegram.sent(chat_id=OPS_CHAT)],
        "email": [e.content.decode() for e in smtp_server.envelopes],
    }


def test_an_incident_notifies_each_target_once_when_it_opens_and_once_when_it_resolves(
    patient, fake_webhook, ops_chat, smtp_server
):
    record_sends(patient, failures(10, 20))

    first, second = evaluate_alerts(FAILURE_RULES), evaluate_alerts(FAILURE_RULES)

    org_key = f"failure_rate:org:{patient.organization_id}"
    assert sorted(first.opened) == sorted(["failure_rate:telegram", org_key])
    assert second.opened == [] and second.notices_sent == 0
    sent = notices(fake_webhook, ops_chat, smtp_server)
    assert sorted(sent["webhook"]) == sorted(["opened failure_rate:telegram", f"opened {org_key}"])
    assert len(sent["telegram"]) == 2 and len(sent["email"]) == 2
    body = next(b for b in fake_webhook.bodies() if b["incident"]["rule"].endswith("telegram"))
    assert body["event_action"] == "trigger"
    assert "10 of 20 sends failed" in body["text"]
    subjects = [message_from_bytes(e.content)["Subject"] for e in smtp_server.envelopes]
    assert sorted(subjects) == sorted(
        ["[WARNING] failure_rate:telegram opened", f"[WARNING] {org_key} opened"]
    )
    for text in [*sent["telegram"], *sent["email"], *(b["text"] for b in fake_webhook.bodies())]:
        assert patient.name not in text and "Take your tablets" not in text

    DeliveryAttempt.objects.update(finished_at=timezone.now() - timedelta(minutes=16))
    resolved = evaluate_alerts(FAILURE_RULES)
    evaluate_alerts(FAILURE_RULES)

    assert sorted(resolved.resolved) == sorted(["failure_rate:telegram", org_key])
    sent = notices(fake_webhook, ops_chat, smtp_server)
    assert sorted(sent["webhook"]) == sorted(
        ["opened failure_rate:telegram", f"opened {org_key}",
         "resolved failure_rate:telegram", f"resolved {org_key}"]
    )  # fmt: skip
    assert len(sent["telegram"]) == 4 and len(sent["email"]) == 4
    incident = Incident.objects.get(rule_key="failure_rate:telegram")
    assert incident.resolved_at is not None
    kinds = list(incident.events.values_list("kind", flat=True))
    assert kinds.count(EventKind.OPENED) == 1 and kinds.count(EventKind.RESOLVED) == 1
    assert kinds.count(EventKind.NOTIFIED) == 6  # two notices to each of three targets
    opened_dedup = next(b for b in fake_webhook.bodies() if b["status"] == "opened")["dedup_key"]
    assert opened_dedup.startswith("companion-incident-")


def test_a_failing_target_is_recorded_and_retried_and_holds_back_no_other(
    patient, fake_webhook, ops_chat, smtp_server
):
    fake_webhook.push(BaseReply(500, {"ok": False}), BaseReply.dropped())
    record_sends(patient, failures(20, 20))

    evaluate_alerts(FAILURE_RULES)

    assert len(ops_chat.sent(chat_id=OPS_CHAT)) == 2 and len(smtp_server.envelopes) == 2
    assert fake_webhook.sent() == []
    failed = IncidentEvent.objects.filter(kind=EventKind.NOTIFY_FAILED, target="webhook")
    assert sorted(failed.values_list("detail", flat=True)) == [
        "opened notice, try 1: HTTP 500",
        "opened notice, try 1: no answer (ConnectionError)",
    ]
    pending = IncidentNotification.objects.filter(status=NotificationStatus.PENDING)
    assert set(pending.values_list("target", flat=True)) == {"webhook"}

    evaluate_alerts(FAILURE_RULES)

    assert sorted(b["incident"]["rule"] for b in fake_webhook.bodies()) == sorted(
        ["failure_rate:telegram", f"failure_rate:org:{patient.organization_id}"]
    )
    assert len(ops_chat.sent(chat_id=OPS_CHAT)) == 2 and len(smtp_server.envelopes) == 2
    assert not IncidentNotification.objects.exclude(status=NotificationStatus.SENT).exists()


def test_too_few_sends_to_say_keep_an_incident_open_and_a_clean_window_resolves_it(patient):
    record_sends(patient, failures(2, 20))
    assert len(evaluate_alerts(FAILURE_RULES).opened) == 2

    # 19 sends in the window, 2 failed: too few to open an incident, not a recovery.
    DeliveryAttempt.objects.filter(
        pk=DeliveryAttempt.objects.filter(outcome=AttemptOutcome.SENT).first().pk
    ).update(finished_at=timezone.now() - timedelta(minutes=16))
    assert evaluate_alerts(FAILURE_RULES).resolved == []

    DeliveryAttempt.objects.filter(outcome=AttemptOutcome.TRANSIENT).update(
        finished_at=timezone.now() - timedelta(minutes=16)
    )
    assert len(evaluate_alerts(FAILURE_RULES).resolved) == 2


def test_a_rule_that_cannot_measure_leaves_its_incident_open(patient, fake_webhook):
    record_sends(patient, failures(20, 20))
    evaluate_alerts(FAILURE_RULES)

    def redis_down():
        raise RedisConnectionError("down")

    def broken():
        raise ZeroDivisionError

    result = evaluate_alerts({"failure_rate": redis_down, "lateness": broken})

    assert result.skipped_rules == ["failure_rate", "lateness"]
    assert Incident.objects.filter(resolved_at__isnull=True).count() == 2


def test_two_evaluations_at_once_open_one_incident_and_send_one_notice_per_target(
    transactional_db, make_patient, fake_webhook, ops_chat, settings
):
    # A slow receiver keeps both evaluations at their notices together.
    settings.ALERT_NOTIFY_TIMEOUT_SECONDS = 3
    fake_webhook.push(*[BaseReply.slow(0.3)] * 20)
    patient = make_patient()

    def both_at_once():
        barrier = threading.Barrier(2)
        results = []

        def run():
            try:
                barrier.wait()
                results.append(evaluate_alerts(FAILURE_RULES))
            finally:
                connections.close_all()

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(results) == 2, "an evaluation raised"
        return results

    for cycle in range(3):
        record_sends(patient, failures(20, 20))
        opened = both_at_once()
        assert sum(len(r.opened) for r in opened) == 2, f"cycle {cycle}"
        DeliveryAttempt.objects.update(finished_at=timezone.now() - timedelta(minutes=16))
        resolved = both_at_once()
        assert sum(len(r.resolved) for r in resolved) == 2, f"cycle {cycle}"

    assert Incident.objects.filter(rule_key="failure_rate:telegram").count() == 3
    webhook = [f"{b['status']} {b['incident']['id']}" for b in fake_webhook.bodies()]
    assert len(webhook) == 12 and len(set(webhook)) == 12  # 2 rules x 3 cycles x 2 notices
    telegram = [c.params["text"] for c in ops_chat.sent(chat_id=OPS_CHAT)]
    assert len(telegram) == 12 and len(set(telegram)) == 12


def test_no_target_configured_still_records_the_incident(patient, settings):
    settings.ALERT_EMAILS, settings.ALERT_TELEGRAM_CHAT_ID, settings.ALERT_WEBHOOK_URL = [], "", ""
    record_sends(patient, failures(20, 20))

    evaluate_alerts(FAILURE_RULES)

    assert Incident.objects.filter(resolved_at__isnull=True).count() == 2
    assert not IncidentNotification.objects.exists()


def test_every_rule_family_is_evaluated_by_default(db, broker, monkeypatch):
    measured = []
    for family, rule in alert_rules.RULES.items():

        def counted(rule=rule, family=family):
            measured.append(family)
            return rule()

        monkeypatch.setitem(alert_rules.RULES, family, counted)

    result = evaluate_alerts()

    assert sorted(measured) == sorted(
        ["failure_rate", "breaker_open", "beat_stale", "backlog_growing", "lateness", "no_worker"]
    )
    assert result.skipped_rules == []
    # No tick and no worker in this test, seen for the first time: nothing opens yet.
    assert result.opened == []


# -- The admin: operators only ---------------------------------------------------------


def test_operators_see_incidents_with_their_timeline_and_care_teams_do_not(
    patient, fake_webhook, admin_client, demo_client
):
    record_sends(patient, failures(20, 20))
    evaluate_alerts(FAILURE_RULES)
    incident = Incident.objects.get(rule_key="failure_rate:telegram")

    listing = admin_client.get(reverse("admin:operations_incident_changelist"))
    page = admin_client.get(reverse("admin:operations_incident_change", args=[incident.pk]))

    assert listing.status_code == 200 and b"failure_rate:telegram" in listing.content
    assert page.status_code == 200
    assert b"opened notice, try 1: HTTP 200" in page.content
    assert b"Timeline" in page.content or b"timeline" in page.content
    open_only = admin_client.get(reverse("admin:operations_incident_changelist") + "?state=open")
    assert b"failure_rate:telegram" in open_only.content
    resolved_only = admin_client.get(
        reverse("admin:operations_incident_changelist") + "?state=resolved"
    )
    assert b"failure_rate:telegram" not in resolved_only.content
    assert demo_client.get(reverse("admin:operations_incident_changelist")).status_code == 403
    assert b"Incidents" not in demo_client.get(reverse("admin:index")).content


# -- Settings and the command --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("ALERT_FAILURE_RATE", "5%", "is not a number"),
        ("ALERT_FAILURE_RATE", "1.5", "is not a share below 1"),
        ("ALERT_WEBHOOK_URL", "hooks.example.org/x", "http://"),
        ("ALERT_WORKER_QUEUES", "scheduler,deliver.fax", "unknown queues: ['deliver.fax']"),
        ("ALERT_EVALUATION_SECONDS", "0", "below its minimum"),
    ],
)
def test_a_wrong_alert_setting_stops_start_up_naming_it(name, value, words):
    result = start_up(**{name: value})
    assert result.returncode != 0
    assert name in result.stderr and words in result.stderr


def test_the_command_runs_one_evaluation(patient, fake_webhook, capsys, monkeypatch):
    monkeypatch.setattr("operations.alerting.RULES", FAILURE_RULES)
    record_sends(patient, failures(20, 20))

    call_command("evaluate_alerts")

    assert "opened 2, resolved 0, notices sent 2, failed 0" in capsys.readouterr().out
    assert len(fake_webhook.bodies()) == 2
