"""Alerts with real processes: Beat runs operations.evaluate_alerts, a worker evaluates,
and the notices reach a fake webhook receiver and the operators' chat on the fake
Telegram, which fails half of all sends (the operators' notices included, so a failed
notice is retried by the next evaluation).

Shortened for the test, and only these: the evaluation runs every 2 s instead of 60,
and the failure rate's window is 30 s instead of 15 min, so that the failures leave it
soon after the provider recovers. The thresholds are the shipped ones (above 5 % of at
least 20 sends); each rule at its shipped settings is in tests/test_alerts.py.
"""

import os
import re
import time
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from operations.models import EventKind, Incident
from scheduling.services import message_schedule
from tests.chaos.conftest import telegram_patients
from tests.conftest import CeleryStack, test_database_url
from tests.fakes.webhook_server import FakeWebhook

pytestmark = pytest.mark.e2e

OPS_CHAT = "-100555"
RULE = "failure_rate:telegram"
EVALUATION_SECONDS = 2
SENDS_PER_SECOND = 2
TRAFFIC_SECONDS = 120
EVALUATED = re.compile(r"Task operations\.evaluate_alerts\[[^\]]+\] succeeded")


@pytest.fixture
def fake_webhook():
    fake = FakeWebhook().start()
    yield fake
    fake.stop()


@pytest.fixture
def alert_stack(transactional_db, fake_telegram, fake_webhook, broker, settings, tmp_path):
    from scheduling.periodic import register_periodic_tasks

    # Beat reads the intervals from the database, written here.
    settings.ALERT_EVALUATION_SECONDS = EVALUATION_SECONDS
    register_periodic_tasks()
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": django_settings.REDIS_URL,
        "TELEGRAM_API_BASE_URL": fake_telegram.base_url,
        "TELEGRAM_BOT_TOKEN": django_settings.TELEGRAM_BOT_TOKEN,
        "SCHEDULER_TICK_SECONDS": "1",
        "DATABASE_CONN_MAX_AGE": "0",
        "DELIVERY_RETRY_BASE_SECONDS": "0.5",
        "DELIVERY_RETRY_MAX_SECONDS": "2",
        # A coin-flip provider fails 5 times in a row every few dozen calls; an open
        # breaker would stop the sends, and its own rule is tested elsewhere.
        "BREAKER_FAILURE_THRESHOLD": "1000",
        "ALERT_EVALUATION_SECONDS": str(EVALUATION_SECONDS),
        "ALERT_WINDOW_MINUTES": "0.5",
        "ALERT_WEBHOOK_URL": fake_webhook.url,
        "ALERT_TELEGRAM_CHAT_ID": OPS_CHAT,
        # This stack runs one worker for these queues only (no writer for outreach).
        "ALERT_WORKER_QUEUES": f"{django_settings.SCHEDULER_QUEUE},deliver.telegram",
    }
    stack = CeleryStack(tmp_path, env)
    queues = f"{django_settings.SCHEDULER_QUEUE},deliver.telegram"
    stack.start("worker", ["worker", "--queues", queues, "--concurrency", "2", "--loglevel",
                           "INFO", "--hostname", f"alerts-{os.getpid()}@%h", "--without-gossip",
                           "--without-mingle"])  # fmt: skip
    stack.start("beat", ["beat", "--loglevel", "INFO", "--pidfile=", "--max-interval", "1"])
    stack.wait_for_log("worker", "ready.")
    yield stack
    stack.stop()


def steady_traffic() -> None:
    """SENDS_PER_SECOND one-time messages due each second for TRAFFIC_SECONDS, each to a
    chat of its own (one a second per chat is Telegram's limit)."""
    count = SENDS_PER_SECOND * TRAFFIC_SECONDS
    start = (timezone.now() + timedelta(seconds=2)).replace(microsecond=0)
    patients = telegram_patients("Alert", count, first_chat=800_000_000)
    for n, patient in enumerate(patients):
        due = start + timedelta(seconds=n // SENDS_PER_SECOND)
        message_schedule(patient=patient, content=f"Reminder {n}", starts_at=due)


def webhook_notices(fake_webhook, status: str) -> list:
    return [
        call
        for call in fake_webhook.sent()
        if call.body["incident"]["rule"] == RULE and call.body["status"] == status
    ]


def chat_notices(fake_telegram, words: str) -> list:
    return [c for c in fake_telegram.sent(chat_id=OPS_CHAT) if words in c.params["text"]]


def wait_until(predicate, timeout: float, stack: CeleryStack, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}:\n{stack.log('worker')[-4000:]}")


def evaluations(stack: CeleryStack) -> int:
    return len(EVALUATED.findall(stack.log("worker")))


@pytest.mark.timeout(240)
def test_failing_sends_alert_once_at_each_target_and_recovery_resolves_once(
    alert_stack, fake_telegram, fake_webhook
):
    fake_telegram.configure(failure_rate=0.5, failure_status=502)
    steady_traffic()

    def opened_everywhere():
        return webhook_notices(fake_webhook, "opened") and chat_notices(
            fake_telegram, f"{RULE} opened"
        )

    wait_until(opened_everywhere, 90, alert_stack, "no opened notice at both targets")
    fake_telegram.configure(failure_rate=0.0)
    recovered_at = time.time()

    def resolved_everywhere():
        return webhook_notices(fake_webhook, "resolved") and chat_notices(
            fake_telegram, f"[RESOLVED] {RULE}"
        )

    wait_until(resolved_everywhere, 90, alert_stack, "no resolved notice at both targets")
    # A few more evaluations with the provider healthy: nothing more may come.
    seen = evaluations(alert_stack)
    wait_until(lambda: evaluations(alert_stack) >= seen + 3, 30, alert_stack, "no evaluation")

    opened, resolved = (
        webhook_notices(fake_webhook, "opened"),
        webhook_notices(fake_webhook, "resolved"),
    )
    chat_opened = chat_notices(fake_telegram, f"{RULE} opened")
    chat_resolved = chat_notices(fake_telegram, f"[RESOLVED] {RULE}")
    assert (len(opened), len(resolved)) == (1, 1), fake_webhook.bodies()
    assert (len(chat_opened), len(chat_resolved)) == (1, 1)
    [incident] = Incident.objects.filter(rule_key=RULE)
    assert incident.resolved_at is not None
    assert opened[0].body["dedup_key"] == resolved[0].body["dedup_key"]
    kinds = list(incident.events.values_list("kind", "target"))
    assert kinds[0] == (EventKind.OPENED, "")
    assert (EventKind.RESOLVED, "") in kinds
    assert kinds.count((EventKind.NOTIFIED, "webhook")) == 2
    assert kinds.count((EventKind.NOTIFIED, "telegram")) == 2
    # Beat ticked and the worker answered all along: no false alarm about either.
    assert not Incident.objects.filter(rule_key__in=["beat_stale", "no_worker:scheduler"])

    first_failure = min(c.at for c in fake_telegram.answered(502))
    chat_failures = sum(1 for c in fake_telegram.calls() if c.params.get("chat_id") == OPS_CHAT
                        and c.status != 200)  # fmt: skip
    print(
        f"\nALERT timeline: first failed send -> opened at webhook "
        f"{opened[0].at - first_failure:.1f} s, at the operators' chat "
        f"{chat_opened[0].at - first_failure:.1f} s; provider healthy -> resolved at webhook "
        f"{resolved[0].at - recovered_at:.1f} s, at the chat "
        f"{chat_resolved[0].at - recovered_at:.1f} s"
        f" (incident open {(incident.resolved_at - incident.opened_at).total_seconds():.1f} s; "
        f"notices to the chat that failed and were retried: {chat_failures}; "
        f"evaluation every {EVALUATION_SECONDS} s, window 30 s)"
    )
