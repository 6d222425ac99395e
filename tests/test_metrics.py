"""Prometheus metrics: what each layer counts when real deliveries go through the fake
Telegram, the shared state read at scrape time, /metrics's token, a real worker's exporter
serving what its prefork children counted, and the alert rules and the dashboard naming
only metrics that are served."""

import json
import os
import re
import socket
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from django.conf import settings as django_settings
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from conversations.inbound import inbound_process
from operations.metrics_processes import forget_earlier_runs, process_exited
from outreach import writing
from outreach.follow_ups import plan_follow_ups, write_follow_up
from outreach.models import FollowUp
from patients.models import InboundUpdate
from scheduling import heartbeat
from scheduling.delivery import deliver
from scheduling.dispatch import dispatch_due
from scheduling.models import Delivery, DeliveryStatus
from scheduling.services import message_cancel, message_schedule
from tests.conftest import CeleryStack, ago, test_database_url
from tests.fakes.telegram_server import Reply
from tests.test_check_ins import due_check_in
from tests.test_follow_ups import quiet_patient
from tests.test_settings import start_up

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "metrics-token-for-the-tests-0123456789abcdef"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scraped(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of an exposition, by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def web_metrics(client, settings) -> str:
    settings.METRICS_TOKEN = TOKEN
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def due_delivery(patient, **kwargs) -> Delivery:
    message = message_schedule(
        patient=patient, content="Take your medication", starts_at=ago(1), **kwargs
    )
    dispatch_due()
    return message.deliveries.get()


# -- What the layers count ---------------------------------------------------------------


def test_a_sent_delivery_is_counted_with_its_lateness_provider_time_and_limiter_wait(
    fake_telegram, patient, django_capture_on_commit_callbacks
):
    sent = {"channel": "telegram", "status": "sent", "error_code": ""}
    before = {
        "sent": value("companion_deliveries_total", **sent),
        "attempts": value(
            "companion_delivery_attempts_total", channel="telegram", outcome="sent", error_code=""
        ),
        "late_count": value("companion_delivery_lateness_seconds_count", channel="telegram"),
        "late_sum": value("companion_delivery_lateness_seconds_sum", channel="telegram"),
        "provider": value(
            "companion_provider_request_duration_seconds_count", channel="telegram", outcome="sent"
        ),
        "waits": value("companion_rate_limit_wait_seconds_count", channel="telegram"),
        "missed": value("companion_rate_limit_slots_missed_total", channel="telegram"),
        "claimed": value("companion_dispatcher_rows_claimed_total"),
        "ticks": value("companion_dispatcher_tick_duration_seconds_count"),
    }
    delivery = due_delivery(patient)
    assert value("companion_dispatcher_rows_claimed_total") == before["claimed"] + 1
    assert value("companion_dispatcher_tick_duration_seconds_count") == before["ticks"] + 1

    with django_capture_on_commit_callbacks(execute=True):
        assert deliver(delivery.pk).status == DeliveryStatus.SENT

    assert value("companion_deliveries_total", **sent) == before["sent"] + 1
    assert (
        value(
            "companion_delivery_attempts_total", channel="telegram", outcome="sent", error_code=""
        )
        == before["attempts"] + 1
    )
    assert value("companion_delivery_lateness_seconds_count", channel="telegram") == (
        before["late_count"] + 1
    )
    # Due a second or more ago (a whole second, ago(1)), sent just now.
    lateness = (
        value("companion_delivery_lateness_seconds_sum", channel="telegram") - (before["late_sum"])
    )
    delivery.refresh_from_db()
    assert 1.0 <= lateness < 30
    assert lateness == pytest.approx((delivery.sent_at - delivery.occurrence_at).total_seconds())
    assert (
        value(
            "companion_provider_request_duration_seconds_count", channel="telegram", outcome="sent"
        )
        == before["provider"] + 1
    )
    # One slot reserved at the claim, and one more for each slot the send woke up too late for.
    missed = value("companion_rate_limit_slots_missed_total", channel="telegram") - before["missed"]
    assert value("companion_rate_limit_wait_seconds_count", channel="telegram") == (
        before["waits"] + 1 + missed
    )


def test_a_refused_send_is_counted_as_failed_with_its_error_code(
    fake_telegram, patient, django_capture_on_commit_callbacks
):
    failed = {"channel": "telegram", "status": "failed", "error_code": "bad_request"}
    permanent = {"channel": "telegram", "outcome": "permanent", "error_code": "bad_request"}
    before = (
        value("companion_deliveries_total", **failed),
        value("companion_delivery_attempts_total", **permanent),
    )
    delivery = due_delivery(patient)
    fake_telegram.push(Reply.chat_not_found())

    with django_capture_on_commit_callbacks(execute=True):
        assert deliver(delivery.pk).status == DeliveryStatus.FAILED

    assert value("companion_deliveries_total", **failed) == before[0] + 1
    assert value("companion_delivery_attempts_total", **permanent) == before[1] + 1


def test_a_transient_error_counts_an_attempt_and_opens_the_breaker_not_a_delivery(
    fake_telegram, patient, settings, broker, client, django_capture_on_commit_callbacks
):
    settings.BREAKER_FAILURE_THRESHOLD = 1
    transient = {"channel": "telegram", "outcome": "transient", "error_code": "network"}
    opened = {"channel": "telegram", "change": "opened"}
    ended = sum(
        s.value
        for f in REGISTRY.collect()
        if f.name == "companion_deliveries"
        for s in f.samples
        if s.labels.get("channel") == "telegram"
    )
    before = (
        value("companion_delivery_attempts_total", **transient),
        value("companion_breaker_transitions_total", **opened),
    )
    delivery = due_delivery(patient)
    fake_telegram.push(Reply.server_error(502))

    with django_capture_on_commit_callbacks(execute=True):
        assert deliver(delivery.pk).status == DeliveryStatus.QUEUED

    assert value("companion_delivery_attempts_total", **transient) == before[0] + 1
    assert value("companion_breaker_transitions_total", **opened) == before[1] + 1
    assert ended == sum(
        s.value
        for f in REGISTRY.collect()
        if f.name == "companion_deliveries"
        for s in f.samples
        if s.labels.get("channel") == "telegram"
    )
    # The breaker's state is read from Redis by whichever process is scraped.
    samples = scraped(web_metrics(client, settings))
    assert sample(samples, "companion_breaker_state", channel="telegram", state="open") == 1
    assert sample(samples, "companion_breaker_state", channel="telegram", state="closed") == 0
    assert sample(samples, "companion_breaker_state", channel="sms", state="closed") == 1


def test_check_ins_follow_ups_and_inbound_updates_are_counted_by_path(
    make_patient, settings, django_capture_on_commit_callbacks
):
    settings.LLM_BASE_URL = ""  # no model: the fallback writes them
    processed = {"channel": "whatsapp", "result": "processed"}
    before = (
        value("companion_check_ins_total", path="fallback"),
        value("companion_follow_ups_total", path="fallback"),
        value("companion_inbound_updates_total", **processed),
    )
    check_in = due_check_in(make_patient)
    quiet_patient(make_patient)
    plan_follow_ups()
    update = InboundUpdate.objects.create(
        channel="whatsapp",
        external_id="wamid.1",
        payload={"from": "4915112345678", "type": "image"},
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert writing.write_check_in(check_in.pk) == "fallback"
        assert write_follow_up(FollowUp.objects.get().pk) == "fallback"
    assert inbound_process(update.pk) == "processed"
    assert inbound_process(update.pk) == "skipped"

    assert value("companion_check_ins_total", path="fallback") == before[0] + 1
    assert value("companion_follow_ups_total", path="fallback") == before[1] + 1
    assert value("companion_inbound_updates_total", **processed) == before[2] + 1
    assert value("companion_inbound_updates_total", channel="whatsapp", result="skipped") >= 1


def test_deliveries_cancelled_with_their_message_are_counted_once_committed(
    fake_telegram, patient, django_capture_on_commit_callbacks
):
    cancelled = {"channel": "telegram", "status": "cancelled", "error_code": "message_cancelled"}
    before = value("companion_deliveries_total", **cancelled)
    delivery = due_delivery(patient)

    with django_capture_on_commit_callbacks(execute=True):
        assert message_cancel(delivery.message, reason="test") == 1
    assert message_cancel(delivery.message, reason="again") == 0

    assert value("companion_deliveries_total", **cancelled) == before + 1


def test_a_node_forgets_earlier_runs_files_and_a_dead_childs_live_gauges(tmp_path, settings):
    settings.PROMETHEUS_MULTIPROC_DIR = str(tmp_path)
    mine, earlier = os.getpid(), 4194303  # above any pid this machine hands out
    for name in (f"counter_{mine}.db", f"counter_{earlier}.db", f"histogram_{earlier}.db"):
        (tmp_path / name).write_bytes(b"")

    assert forget_earlier_runs() == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"counter_{mine}.db"]

    child = 4194302
    (tmp_path / f"gauge_livesum_{child}.db").write_bytes(b"")
    (tmp_path / f"counter_{child}.db").write_bytes(b"")
    process_exited(child)
    # Its counters stay, so the node's totals never go down.
    assert {p.name for p in tmp_path.iterdir()} == {f"counter_{child}.db", f"counter_{mine}.db"}


# -- The shared state, read at scrape time ------------------------------------------------


def test_queue_depth_held_backlog_and_the_last_tick_are_read_when_scraped(
    fake_telegram, make_patient, broker, client, settings
):
    for _ in range(3):
        message_schedule(patient=make_patient(), content="Dose", starts_at=ago(1))
    dispatch_due()  # the test's transaction: the tasks are published by hand below
    held = list(Delivery.objects.values_list("pk", flat=True)[:2])
    Delivery.objects.filter(pk__in=held).update(held_at=timezone.now())
    broker.client.rpush("deliver.telegram", "task-a", "task-b")
    broker.client.rpush("deliver.telegram:3", "task-c")
    heartbeat.record_tick()

    samples = scraped(web_metrics(client, settings))

    assert sample(samples, "companion_queue_depth", queue="deliver.telegram") == 3
    assert sample(samples, "companion_queue_depth", queue="deliver.sms") == 0
    assert sample(samples, "companion_deliveries_held", channel="telegram") == 2
    assert sample(samples, "companion_deliveries_held", channel="web") == 0
    assert 0 <= sample(samples, "companion_dispatcher_last_tick_age_seconds") < 30
    assert sample(samples, "companion_metrics_source_up", source="redis") == 1
    assert sample(samples, "companion_metrics_source_up", source="database") == 1


def test_a_scrape_without_redis_says_so_and_leaves_its_figures_out(client, settings, db):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    samples = scraped(web_metrics(client, settings))
    assert sample(samples, "companion_metrics_source_up", source="redis") == 0
    assert not any(name == "companion_queue_depth" for name, _ in samples)
    assert sample(samples, "companion_deliveries_held", channel="telegram") == 0


# -- /metrics and its token ------------------------------------------------------------------


def test_metrics_refuses_a_request_without_the_token_and_answers_with_it(client, settings, db):
    settings.METRICS_TOKEN = TOKEN
    # Prometheus scrapes inside the deployment over plain HTTP, like the liveness probe.
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/metrics").status_code == 403
    wrong = client.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 403
    basic = client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status_code == 403

    answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})

    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(answer.content.decode())}
    # Ours, and django-prometheus's request metrics.
    assert {"companion_breaker_state", "companion_deliveries_held"} <= names
    assert any(name.startswith("django_http_") for name in names)


def test_without_a_token_metrics_does_not_exist_unless_debug(client, settings, db):
    # The shipped default: no METRICS_TOKEN.
    assert django_settings.METRICS_TOKEN == ""
    assert client.get("/metrics").status_code == 404
    settings.DEBUG = True
    assert client.get("/metrics").status_code == 200


def test_a_short_metrics_token_stops_start_up():
    result = start_up(METRICS_TOKEN="short")
    assert result.returncode != 0
    assert "METRICS_TOKEN must be 32 or more" in result.stderr


def test_the_exporters_are_off_and_on_loopback_by_default():
    assert django_settings.METRICS_PORT == 0
    assert django_settings.METRICS_ADDRESS == "127.0.0.1"


# -- A real worker and Beat, scraped over HTTP ------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:  # noqa: S310
        return answer.read().decode()


def wait_until(predicate, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


@pytest.fixture
def metered_stack(transactional_db, fake_telegram, broker, tmp_path):
    """A prefork worker (two children) in multiprocess mode and Beat, each with its
    exporter on a port of its own, as the Procfile runs them."""
    from scheduling.periodic import register_periodic_tasks

    register_periodic_tasks()
    ports = {"worker": free_port(), "beat": free_port()}
    base = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": django_settings.REDIS_URL,
        "TELEGRAM_API_BASE_URL": fake_telegram.base_url,
        "TELEGRAM_BOT_TOKEN": django_settings.TELEGRAM_BOT_TOKEN,
        "SCHEDULER_TICK_SECONDS": "1",
        "DATABASE_CONN_MAX_AGE": "0",
    }
    base.pop("PROMETHEUS_MULTIPROC_DIR", None)
    multiproc = tmp_path / "metrics-worker"
    # A file left by an earlier run of the node: the worker forgets it at start.
    multiproc.mkdir()
    (multiproc / "counter_999999.db").write_bytes(b"")
    stack = CeleryStack(tmp_path, base)
    queues = ",".join([django_settings.SCHEDULER_QUEUE, *django_settings.DELIVERY_QUEUES.values()])
    stack.env = {
        **base,
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "METRICS_PORT": str(ports["worker"]),
    }
    stack.start(
        "worker",
        [
            "worker",
            "--queues",
            queues,
            "--concurrency",
            "2",
            "--loglevel",
            "INFO",
            "--hostname",
            f"metrics-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
        ],
    )
    stack.env = {**base, "METRICS_PORT": str(ports["beat"])}
    stack.start("beat", ["beat", "--loglevel", "INFO", "--pidfile=", "--max-interval", "1"])
    stack.wait_for_log("worker", "ready.")
    stack.wait_for_log("worker", "exporter on")
    stack.wait_for_log("beat", "exporter on")
    stack.ports, stack.multiproc = ports, multiproc
    yield stack
    stack.stop()


def metric_names_in(expression: str) -> set[str]:
    """The metric names a PromQL expression uses: ours, django-prometheus's, Prometheus's up."""
    expression = re.sub(r'"[^"]*"', '""', expression)  # label values are not names
    return set(re.findall(r"\b(?:companion|django)_[a-z0-9_]+\b|\bup\b", expression))


def alert_expressions() -> dict[str, str]:
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    return {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}


def dashboard_expressions() -> dict[str, str]:
    dashboard = json.loads((ROOT / "deploy/grafana/companion-dashboard.json").read_text())
    return {
        f"{panel['title']} ({target['refId']})": target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    }


@pytest.mark.e2e
def test_a_workers_exporter_serves_its_prefork_childrens_counts_and_every_metric_in_use_exists(
    metered_stack, fake_telegram, make_patient, client, settings, django_capture_on_commit_callbacks
):
    settings.LLM_BASE_URL = ""
    # Four messages to one chat at once: its 1/s limit sends some after an inline wait and
    # defers the rest; one to a chat that does not exist fails.
    patient, refused = make_patient(), make_patient()
    for n in range(4):
        message_schedule(patient=patient, content=f"Dose {n}", starts_at=ago(1))
    message_schedule(patient=refused, content="Dose", starts_at=ago(1))
    fake_telegram.push(Reply.chat_not_found(), chat_id=refused.contacts.get().address)

    wait_until(lambda: Delivery.objects.filter(status=DeliveryStatus.SENT).count() == 4)
    wait_until(lambda: Delivery.objects.filter(status=DeliveryStatus.FAILED).count() == 1)
    # What the web process counts itself: the companion's jobs and an inbound update.
    with django_capture_on_commit_callbacks(execute=True):
        writing.write_check_in(due_check_in(make_patient).pk)
        quiet_patient(make_patient)
        plan_follow_ups()
        write_follow_up(FollowUp.objects.get().pk)
    update = InboundUpdate.objects.create(
        channel="whatsapp",
        external_id="wamid.2",
        payload={"from": "4915112345678", "type": "image"},
    )
    inbound_process(update.pk)

    def worker_counted() -> bool:
        samples = scraped(scrape(metered_stack.ports["worker"]))
        return (
            sample(
                samples,
                "companion_deliveries_total",
                channel="telegram",
                status="sent",
                error_code="",
            )
            or 0
        ) >= 4

    wait_until(worker_counted, timeout=20)
    worker_text = scrape(metered_stack.ports["worker"])
    worker = scraped(worker_text)
    assert (
        sample(
            worker,
            "companion_deliveries_total",
            channel="telegram",
            status="failed",
            error_code="bad_request",
        )
        == 1
    )
    assert sample(worker, "companion_delivery_lateness_seconds_count", channel="telegram") == 4
    assert (sample(worker, "companion_rate_limit_deferred_total", channel="telegram") or 0) >= 1
    # Counted in the pool's children (the main process runs no task), served by the main
    # process's exporter from their files; the earlier run's file was forgotten.
    main = metered_stack.processes["worker"].pid
    pids = {int(f.stem.rsplit("_", 1)[1]) for f in metered_stack.multiproc.glob("counter_*.db")}
    assert pids - {main}, pids
    assert 999999 not in pids
    # The shared state comes with every exporter's answer.
    assert sample(worker, "companion_breaker_state", channel="telegram", state="closed") == 1

    beat = scraped(scrape(metered_stack.ports["beat"]))
    assert (
        sample(beat, "companion_celery_tasks_published_total", task="scheduling.dispatch_due") or 0
    ) >= 1

    assert client.get("/healthz").status_code == 200  # a request the web's metrics count
    served = {name for name, _ in worker} | {name for name, _ in beat}
    served |= {name for name, _ in scraped(web_metrics(client, settings))}
    served.add("up")  # Prometheus's own, per target
    in_use = {**alert_expressions(), **dashboard_expressions()}
    for where, expression in in_use.items():
        names = metric_names_in(expression)
        assert names, f"{where}: names no metric of ours"
        assert names <= served, f"{where}: {names - served} not served"
