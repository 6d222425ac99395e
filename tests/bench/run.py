"""`make bench` and `make bench-quick`: measurements, not tests.

Each scenario starts its own worker and Beat processes and its own fake Telegram server,
against a database and a Redis database of its own (companion_bench, Redis db 9), and
every ratio is taken within one run on one machine, because absolute times drift here.
Results go to docs/benchmarks.md (a table) and docs/benchmarks.json.

    python -m tests.bench.run --quick     # about two minutes
    python -m tests.bench.run             # the full sizes
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).parent / "celery")
BENCH_ENV = {
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/companion_bench",
    "REDIS_URL": "redis://127.0.0.1:6379/9",
    "DJANGO_SECRET_KEY": "benchmarks-only-key-it-signs-nothing-0123456789abcdefghij",
    "FIELD_ENCRYPTION_KEYS": "W6sy8GiQoDxek5R122ZuB89-90V7GeSg7eTT2JAjv30=",
    "BLIND_INDEX_KEY": "bench-blind-index-key",
    "DJANGO_DEBUG": "false",
    "CHANNEL_SANDBOX": "false",
    "TELEGRAM_BOT_TOKEN": "1:BENCH",
    "SCHEDULER_TICK_SECONDS": "1",
    "DATABASE_CONN_MAX_AGE": "600",
    "LOG_LEVEL": "WARNING",
}
for _name, _value in BENCH_ENV.items():
    os.environ.setdefault(_name, _value)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "companion.settings")


@dataclass
class Row:
    scenario: str
    figure: str
    value: float
    unit: str
    target: str
    met: bool | None  # None: no target, a reference figure


@dataclass(frozen=True)
class Sizes:
    ceiling: int
    end_to_end: int
    slow_provider: int
    schedule_rows: int
    due_rows: int
    limited: int
    steady_seconds: int
    memory: tuple[int, int]  # deliveries after which the worker's memory is read
    naive: tuple[int, ...]  # schedule sizes for the naive django-celery-beat comparison
    naive_cap: float  # seconds the naive design gets before its rate is extrapolated
    broadcast: int  # scenario 9: messages at the 1,000/s broadcast rate
    check_in_plans: int  # scenario 10: patients with daily check-ins
    check_ins_written: int  # scenario 11: check-ins written against a model answering in 1 s
    lead: float  # seconds from making the messages to their due time: the processes start
    all_pools: bool  # scenario 3's one-message-per-task pools too (slow; the full run only)
    scale_out: int  # scenarios 13 and 14: messages due at once per run
    scale_limited: int  # scenario 13 at Telegram's limits: chats per run
    history_rows: int  # scenario 15: deliveries (each with an attempt) already in the table
    history_due: int  # scenario 15: messages dispatched and delivered for each measure


QUICK = Sizes(ceiling=2000, end_to_end=3000, slow_provider=1500, schedule_rows=100_000,
              due_rows=10_000, limited=200, steady_seconds=10, memory=(500, 3000),
              naive=(1000,), naive_cap=10, broadcast=3000, lead=5, all_pools=False,
              check_in_plans=100_000, check_ins_written=160, scale_out=3000,
              scale_limited=150, history_rows=200_000,
              history_due=2000)  # fmt: skip
FULL = Sizes(ceiling=10_000, end_to_end=20_000, slow_provider=3000, schedule_rows=1_000_000,
             due_rows=10_000, limited=3000, steady_seconds=300, memory=(10_000, 100_000),
             naive=(10_000, 50_000), naive_cap=30, broadcast=20_000, lead=8,
             all_pools=True, check_in_plans=1_000_000, check_ins_written=800,
             scale_out=20_000, scale_limited=900, history_rows=10_000_000,
             history_due=5000)  # fmt: skip


class Processes:
    """Worker and Beat processes for one scenario, stopped when it ends."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir, self.env, self.running = log_dir, {**os.environ, **env}, []

    def start(self, name: str, args: list[str], app: str = "companion") -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed at exit
        process = subprocess.Popen([CELERY, "-A", app, *args], cwd=ROOT, env=self.env,
                                   stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
        self.running.append(process)
        return process

    def worker(self, name: str, queues: str, *extra: str, app: str = "companion"):
        return self.start(name, ["worker", "-Q", queues, "--loglevel", "WARNING",
                                 "--hostname", f"{name}@bench", "--without-gossip",
                                 "--without-mingle", *extra], app=app)  # fmt: skip

    def node(self, number: int, queues: str) -> subprocess.Popen:
        """A worker node as a pod runs it: a name of its own, the default pool; INFO, so
        that its log says when it is ready."""
        args = ["worker", "-Q", queues, "--loglevel", "INFO", "--hostname", f"bench-{number}@%h"]
        return self.start(f"node{number}", [*args, "--without-gossip", "--without-mingle"])

    def beat(self):
        return self.start("beat", ["beat", "--loglevel", "WARNING", "--pidfile=",
                                   "--max-interval", "1"])  # fmt: skip

    def stop(self) -> None:
        for process in self.running:
            if process.poll() is None:
                os.killpg(process.pid, 15)
        for process in self.running:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
        self.running = []


def wait_until(condition, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return False


# -- Setup ---------------------------------------------------------------------------------


def prepare_database() -> None:
    import django

    django.setup()
    from django.core.management import call_command

    from care_team.preflight import check_postgres

    problem = check_postgres(create_database=True)
    if problem:
        raise SystemExit(str(problem))
    call_command("migrate", verbosity=0)
    call_command("setup_periodic_tasks", verbosity=0)


def reset_state() -> None:
    import redis
    from django.conf import settings
    from django.db import connection

    tables = ["outreach_checkin", "outreach_checkinplan", "scheduling_deliveryattempt",
              "scheduling_delivery", "scheduling_scheduledmessage", "patients_contact",
              "patients_patient"]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} CASCADE")
    redis.Redis.from_url(settings.REDIS_URL).flushdb()


def create_due_messages(count: int, due_in: float, per_second: float | None = None) -> None:
    """One patient with a Telegram chat and one one-time message each, all due at once,
    or `per_second` of them due each second from `due_in` on.

    One of each is made through the ORM; the rest are copies made in SQL, since the
    ORM's bulk_create spends about a minute on 100,000 patients, contacts and messages."""
    from django.db import connection
    from django.utils import timezone

    from patients.models import Contact, Organization, Patient
    from scheduling.models import ScheduledMessage

    organization, _ = Organization.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
    now = timezone.now()
    first_due = (now + timedelta(seconds=due_in)).replace(microsecond=0)
    patient = Patient.objects.create(organization=organization, name="Bench 0", timezone="UTC")
    address = str(10_000_000 + patient.pk)
    contact = Contact.objects.create(
        patient=patient, channel="telegram", address=address, verified_at=now
    )
    message = ScheduledMessage.objects.create(
        organization=organization, patient=patient, channel="telegram", content="Bench reminder",
        starts_at=first_due, next_run_at=first_due, next_occurrence_at=first_due)  # fmt: skip
    step = 1 / per_second if per_second else 0.0
    with connection.cursor() as cursor:
        _copy_rows(cursor, Patient, patient.pk, {"name": "'Bench ' || g"},
                   f"generate_series(1, {count - 1}) g")  # fmt: skip
        others = f"patients_patient p WHERE p.id > {patient.pk}"
        # Copied in SQL, the addresses stay plain text (read as they are) and all share
        # the first one's hash: no benchmark looks a contact up by its address.
        address_sql = "(10000000 + p.id)::text"
        _copy_rows(cursor, Contact, contact.pk, {"patient_id": "p.id", "address": address_sql},
                   others)  # fmt: skip
        due = f"t.starts_at + ((p.id - {patient.pk}) * {step}) * interval '1 second'"
        _copy_rows(cursor, ScheduledMessage, message.pk,
                   {"patient_id": "p.id", "starts_at": due, "next_run_at": due,
                    "next_occurrence_at": due}, others)  # fmt: skip
        cursor.execute("ANALYZE")


def _copy_rows(cursor, model, template_id: int, changed: dict[str, str], source: str) -> None:
    """INSERT copies of one row, with some columns given as SQL over `source`."""
    table = model._meta.db_table
    columns = [f.column for f in model._meta.concrete_fields if f.column != "id"]
    values = [changed.get(c, f"t.{c}") for c in columns]
    cursor.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(values)} "  # noqa: S608
        f"FROM {table} t, {source} {'AND' if 'WHERE' in source else 'WHERE'} t.id = %s",
        [template_id],
    )


def delivery_figures() -> dict:
    from scheduling.models import Delivery, DeliveryStatus

    sent = list(
        Delivery.objects.filter(status=DeliveryStatus.SENT).values_list(
            "next_attempt_at", "sent_at"
        )
    )
    lateness = sorted((s - due).total_seconds() for due, s in sent)
    first_due = min(due for due, _ in sent)
    last_sent = max(s for _, s in sent)
    span = (last_sent - first_due).total_seconds()
    return {
        "sent": len(sent),
        "rate": len(sent) / span if span > 0 else float("inf"),
        "p50": lateness[len(lateness) // 2],
        "p99": lateness[min(len(lateness) - 1, int(len(lateness) * 0.99))],
    }


def sent_count() -> int:
    from scheduling.models import Delivery, DeliveryStatus

    return Delivery.objects.filter(status=DeliveryStatus.SENT).count()


# -- Scenarios -----------------------------------------------------------------------------


def ceiling(sizes: Sizes, log_dir: Path) -> tuple[list[Row], float]:
    """1. A near no-op task over our broker with our worker settings (prefork, 2)."""
    import redis
    from django.conf import settings

    from tests.bench.bench_app import COUNTER, noop

    reset_state()
    for _ in range(sizes.ceiling):
        noop.apply_async(queue="bench")
    client = redis.Redis.from_url(settings.REDIS_URL)
    processes = Processes(log_dir, {})
    processes.worker("ceiling", "bench", "--concurrency", "2", app="tests.bench.bench_app")
    try:
        wait_until(lambda: int(client.get(COUNTER) or 0) > 0, 60)
        started = time.monotonic()
        wait_until(lambda: int(client.get(COUNTER) or 0) >= sizes.ceiling, 300)
        elapsed = time.monotonic() - started
    finally:
        processes.stop()
    rate = sizes.ceiling / elapsed
    return [Row("1. ceiling: no-op task, prefork 2", "tasks/s", rate, "/s", "reference",
                None)], rate  # fmt: skip


def end_to_end(sizes: Sizes, log_dir: Path, ceiling_rate: float) -> list[Row]:
    """2. One-time messages due at once, provider answering at once, limiter off."""
    from django.conf import settings

    from tests.fakes.telegram_server import FakeTelegram

    reset_state()
    create_due_messages(sizes.end_to_end, due_in=sizes.lead)
    fake = FakeTelegram(keep_alive=True).start()
    processes = Processes(log_dir, {"TELEGRAM_API_BASE_URL": fake.base_url,
                                    "DELIVERY_RATE_LIMIT_ENABLED": "false"})  # fmt: skip
    processes.worker("e2e", "scheduler,deliver.telegram")
    processes.beat()
    try:
        wait_until(lambda: sent_count() >= sizes.end_to_end, 600, step=0.5)
    finally:
        processes.stop()
        fake.stop()
    figures = delivery_figures()
    target = 0.5 * ceiling_rate
    name = (f"2. end to end, {sizes.end_to_end} due at once, instant provider, one worker "
            f"(prefork {settings.CELERY_WORKER_CONCURRENCY})")  # fmt: skip
    return [
        Row(name, "deliveries/s", figures["rate"], "/s", f">= {target:.0f} (0.5x ceiling)",
            figures["rate"] >= target),
        Row(name, "lateness p50", figures["p50"], "s", "", None),
        Row(name, "lateness p99", figures["p99"], "s", "", None),
        Row(name, "delivered", figures["sent"], "", f"= {sizes.end_to_end}",
            figures["sent"] == sizes.end_to_end),
    ]  # fmt: skip


def slow_provider(sizes: Sizes, log_dir: Path) -> list[Row]:
    """3. The provider answers in 150 ms: the waits must overlap. The alternatives: one
    send per task in a prefork or a threads pool, or our batches, whose sends overlap
    on one event loop per process."""
    from tests.fakes.telegram_server import FakeTelegram

    rows = []
    alternatives = [  # label, worker pool, batch size, share of the full size
        ("prefork 2, one message per task", ["--pool", "prefork", "--concurrency", "2"], 1, 20),
        ("threads 100, one message per task", ["--pool", "threads", "--concurrency", "100"],
         1, 5),
        ("prefork 2, batches of 25", ["--pool", "prefork", "--concurrency", "2"], 25, 2),
        ("prefork 4, batches of 25 (the default)", ["--pool", "prefork", "--concurrency", "4"],
         25, 1),
    ]  # fmt: skip
    if not sizes.all_pools:
        alternatives = [a for a in alternatives if a[2] > 1]
    for label, pool, batch, share in alternatives:
        count = max(60, sizes.slow_provider // share)
        reset_state()
        create_due_messages(count, due_in=sizes.lead)
        fake = FakeTelegram(delay=0.15, keep_alive=True).start()
        processes = Processes(log_dir, {"TELEGRAM_API_BASE_URL": fake.base_url,
                                        "DELIVERY_RATE_LIMIT_ENABLED": "false",
                                        "DELIVERY_BATCH_SIZE": str(batch)})  # fmt: skip
        processes.worker("scheduler", "scheduler", "--concurrency", "1")
        processes.worker("slow", "deliver.telegram", *pool)
        processes.beat()
        try:
            wait_until(lambda count=count: sent_count() >= count, 600, step=0.5)
        finally:
            processes.stop()
            fake.stop()
        figures = delivery_figures()
        ours = "default" in label
        rows.append(Row(f"3. provider answering in 150 ms, {label}", "deliveries/s",
                        figures["rate"], "/s", ">= 300" if ours else "comparison",
                        figures["rate"] >= 300 if ours else None))  # fmt: skip
    return rows


def steady_load(sizes: Sizes, log_dir: Path) -> list[Row]:
    """5. 100 messages/s due, spread over the run, with the default tick."""
    from django.conf import settings

    from tests.fakes.telegram_server import FakeTelegram

    reset_state()
    count = 100 * sizes.steady_seconds
    create_due_messages(count, due_in=sizes.lead + 2, per_second=100)
    fake = FakeTelegram(keep_alive=True).start()
    tick = str(settings.SCHEDULER_TICK_DEFAULT)
    processes = Processes(log_dir, {"TELEGRAM_API_BASE_URL": fake.base_url,
                                    "DELIVERY_RATE_LIMIT_ENABLED": "false",
                                    "SCHEDULER_TICK_SECONDS": tick})  # fmt: skip
    processes.worker("steady", "scheduler,deliver.telegram")
    processes.beat()
    try:
        wait_until(lambda: sent_count() >= count, sizes.steady_seconds + 120, step=0.5)
    finally:
        processes.stop()
        fake.stop()
    figures = delivery_figures()
    name = f"5. steady load, 100/s due for {sizes.steady_seconds} s, tick {tick} s"
    return [
        Row(name, "lateness p99", figures["p99"], "s", "<= 2", figures["p99"] <= 2),
        Row(name, "lateness p50", figures["p50"], "s", "", None),
        Row(name, "delivered", figures["sent"], "", f"= {count}", figures["sent"] == count),
    ]  # fmt: skip


def dispatcher_cost(sizes: Sizes, log_dir: Path) -> list[Row]:
    """4. An idle tick and a due batch against a large table of future messages."""
    from django.db import connection, transaction
    from django.utils import timezone

    from scheduling.dispatch import dispatch_due, due_messages
    from scheduling.models import ScheduledMessage

    reset_state()
    create_due_messages(1, due_in=86400)
    template = ScheduledMessage.objects.get()
    # The same patient's message, a second later each time, in SQL.
    moved = {c: f"t.{c} + (g || ' seconds')::interval"
             for c in ("starts_at", "next_run_at", "next_occurrence_at")}  # fmt: skip
    with connection.cursor() as cursor:
        _copy_rows(cursor, ScheduledMessage, template.pk, moved,
                   f"generate_series(1, {sizes.schedule_rows - 1}) g")  # fmt: skip
        cursor.execute("ANALYZE scheduling_scheduledmessage")
    idle = []
    for _ in range(20):
        started = time.perf_counter()
        dispatch_due()
        idle.append((time.perf_counter() - started) * 1000)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE scheduling_scheduledmessage SET next_run_at = now() - interval '1 second', "
            "next_occurrence_at = now() - interval '1 second' WHERE id IN (SELECT id FROM "
            "scheduling_scheduledmessage ORDER BY next_run_at LIMIT %s)",
            [sizes.due_rows],
        )
    started = time.perf_counter()
    dispatched = dispatch_due()
    batch = time.perf_counter() - started
    with transaction.atomic(), connection.cursor() as cursor:
        sql, params = due_messages(timezone.now(), 500, urgent=False).query.sql_with_params()
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    (ROOT / "docs" / "benchmarks-dispatch-plan.txt").write_text(plan + "\n")
    name = f"4. dispatcher, {sizes.schedule_rows:,} pending messages"
    return [
        Row(name, "idle tick (median of 20)", statistics.median(idle), "ms", "<= 5",
            statistics.median(idle) <= 5),
        Row(name, f"claim + enqueue {dispatched:,} due", batch, "s", "<= 3", batch <= 3),
        Row(name, "due query uses message_due_idx", float("message_due_idx" in plan), "",
            "yes", "message_due_idx" in plan),
    ]  # fmt: skip


def provider_limits(sizes: Sizes, log_dir: Path) -> list[Row]:
    """6. The fake enforces Telegram's limits with 429s; 4 worker processes; limiter on."""
    from tests.fakes.telegram_server import FakeTelegram

    reset_state()
    create_due_messages(sizes.limited, due_in=sizes.lead)
    fake = FakeTelegram(global_per_second=30, per_chat_per_second=1, keep_alive=True).start()
    processes = Processes(log_dir, {"TELEGRAM_API_BASE_URL": fake.base_url})
    processes.worker("scheduler", "scheduler", "--concurrency", "1")
    for n in range(4):
        processes.worker(f"limited{n}", "deliver.telegram", "--concurrency", "1")
    processes.beat()
    try:
        wait_until(lambda: sent_count() >= sizes.limited, 900, step=0.5)
    finally:
        processes.stop()
        fake.stop()
    rate, rejected = accepted_rate_and_429s(fake.calls())
    name = f"6. Telegram limits, {sizes.limited} chats, 4 workers"
    return [
        Row(name, "achieved rate", rate, "/s", ">= 28.5 (95% of 30/s)", rate >= 28.5),
        Row(name, "429 answers", rejected, "", "= 0", rejected == 0),
    ]  # fmt: skip


def _delivery_rate(count: int, encrypted: bool, log_dir: Path) -> float:
    """Scenario 2's path for `count` messages, with encryption at rest on or off."""
    from django.conf import settings

    from tests.fakes.telegram_server import FakeTelegram

    reset_state()
    settings.FIELD_ENCRYPTION_ENABLED = encrypted  # the messages made here, as the workers
    create_due_messages(count, due_in=5)
    fake = FakeTelegram(keep_alive=True).start()
    env = {
        "TELEGRAM_API_BASE_URL": fake.base_url,
        "DELIVERY_RATE_LIMIT_ENABLED": "false",
        "FIELD_ENCRYPTION_ENABLED": str(encrypted).lower(),
    }
    processes = Processes(log_dir, env)
    processes.worker("encryption", "scheduler,deliver.telegram")
    processes.beat()
    try:
        wait_until(lambda: sent_count() >= count, 600, step=0.5)
    finally:
        processes.stop()
        fake.stop()
        settings.FIELD_ENCRYPTION_ENABLED = True
    return delivery_figures()["rate"]


def encryption_cost(sizes: Sizes, log_dir: Path) -> list[Row]:
    """12. The delivery path with encryption at rest off and on, in the same run: four
    runs, off-on-on-off, so that a drift in the machine's speed falls on both sides."""
    count = sizes.end_to_end // 4
    rates = {False: [], True: []}
    for encrypted in (False, True, True, False):
        rates[encrypted].append(_delivery_rate(count, encrypted, log_dir))
    off, on = statistics.mean(rates[False]), statistics.mean(rates[True])
    name = f"12. encryption at rest, {count} due at once, twice each, instant provider"
    return [
        Row(name, "deliveries/s, encryption off", off, "/s", "", None),
        Row(name, "deliveries/s, encryption on", on, "/s", "", None),
        Row(name, "on / off", on / off, "", ">= 0.90", on / off >= 0.9),
    ]


def accepted_rate_and_429s(calls) -> tuple[float, int]:
    """The fake's accepted sends per second, first to last, and its 429 answers."""
    accepted = sorted(c.at for c in calls if c.status == 200)
    rejected = sum(1 for c in calls if c.status == 429)
    rate = (len(accepted) - 1) / (accepted[-1] - accepted[0]) if len(accepted) > 1 else 0.0
    return rate, rejected


def accepted_per_second(calls) -> list[int]:
    """Accepted sends in each whole second from the first one."""
    accepted = sorted(c.at for c in calls if c.status == 200)
    counts = Counter(int(at - accepted[0]) for at in accepted) if accepted else Counter()
    return [counts[second] for second in range(max(counts, default=-1) + 1)]


def broadcast_rate(sizes: Sizes, log_dir: Path) -> list[Row]:
    """9. Telegram's paid broadcast rate: the fake enforces 1,000/s per bot (and 1/s per
    chat); our limiter at 975/s, a little under, as at 29/s for 30/s; 4 pool processes."""
    from tests.fakes.telegram_server import FakeTelegram

    reset_state()
    create_due_messages(sizes.broadcast, due_in=sizes.lead)
    due = time.monotonic() + sizes.lead
    fake = FakeTelegram(global_per_second=1000, per_chat_per_second=1, keep_alive=True).start()
    env = {"TELEGRAM_API_BASE_URL": fake.base_url, "TELEGRAM_RATE_PER_SECOND": "975"}
    processes = Processes(log_dir, env)
    groups = {
        "dispatcher": [processes.worker("scheduler", "scheduler", "--concurrency", "1").pid],
        "senders": [
            processes.worker(
                "broadcast", "deliver.telegram", "--concurrency", "4", "--loglevel", "INFO"
            ).pid
        ],
        "beat": [processes.beat().pid],
    }
    sampler = LoadSampler(groups)
    sampler.start()
    try:
        time.sleep(max(0.0, due - time.monotonic()))
        sampler.mark()
        wait_until(lambda: sent_count() >= sizes.broadcast, 600, step=0.5)
        sampler.finish()
    finally:
        sampler.stopping.set()
        processes.stop()
        fake.stop()
    rate, rejected = accepted_rate_and_429s(fake.calls())
    per_second = accepted_per_second(fake.calls())
    logs = log_dir.glob("broadcast*.log")
    missed = sum(log.read_text().count("missed its rate-limit slot") for log in logs)
    name = f"9. broadcast, 1,000/s per bot enforced, {sizes.broadcast} chats, limiter at 975/s"
    return [
        Row(name, "achieved rate", rate, "/s", ">= 900 (90% of 1,000/s)", rate >= 900),
        Row(name, "429 answers", rejected, "", "= 0", rejected == 0),
        Row(name, "sends that missed their slot", missed, "", "", None),
        # The first seconds share the 2 cores with the dispatcher turning all the due
        # messages into deliveries at once; after it, the limiter's own pace.
        Row(
            name,
            "accepted per second, after the first 5 s (median)",
            statistics.median(per_second[5:-1] or [0]),
            "/s",
            "",
            None,
        ),
        *_where_the_cores_went(name, sampler, sizes.broadcast),
    ]


BROADCAST_GROUPS = {
    "senders": "the delivering worker (4 pool processes)",
    "dispatcher": "the dispatching worker",
    "postgres": "PostgreSQL sessions",
    "beat": "Beat",
    "bench": "fake Telegram and bench",
    "machine": "whole machine, other work on it included",
}


def _where_the_cores_went(name: str, sampler: "LoadSampler", count: int) -> list[Row]:
    """Scenario 9's bound: the CPU each part spent per delivery, from the due time to the
    last send, and the rate the machine's cores could carry at the whole machine's cost."""
    rows = [
        Row(
            name,
            f"CPU per delivery, {what}",
            sampler.cpu_seconds(group) / count * 1000,
            "ms",
            "",
            None,
        )
        for group, what in BROADCAST_GROUPS.items()
    ]
    per_delivery = sampler.cpu_seconds("machine") / count
    carried = CORES / per_delivery if per_delivery else 0.0
    rows.append(Row(name, f"what {CORES} cores carry at that cost", carried, "/s", "", None))
    return rows


def _send_through_the_limiter(chats: list[str], base_url: str, answers) -> None:
    """Scenario 16's sender: the delivery path's reservation (a batch of DELIVERY_BATCH_SIZE
    slots, up to the inline wait ahead, CLAIM_LEAD at the soonest) and the Telegram
    adapter's send_batch, each send at its slot; no database, no Celery."""
    from django.conf import settings

    from channels_app.base import OutboundMessage, SendResult
    from channels_app.ratelimit import SendSlot, reserve_slots
    from channels_app.registry import adapter_for
    from scheduling.delivery import CLAIM_LEAD

    settings.TELEGRAM_API_BASE_URL = base_url
    adapter, pending, accepted = adapter_for("telegram"), list(chats), 0
    size, inline = settings.DELIVERY_BATCH_SIZE, settings.DELIVERY_RATE_INLINE_WAIT_SECONDS
    while pending:
        batch, pending = pending[:size], pending[size:]
        slots = reserve_slots("telegram", batch, inline, CLAIM_LEAD)
        answered = time.monotonic()
        sends, refused = [], []
        for chat, slot in zip(batch, slots, strict=True):
            if not slot.reserved:
                refused.append(chat)
                continue
            text = OutboundMessage(0, 0, "telegram", chat, "Bench reminder", "text")
            sends.append((text, SendSlot(answered + slot.wait, "telegram", chat)))
        pending = refused + pending
        if not sends:
            time.sleep(0.2)  # the next slot is further off than the inline wait
        for timed in adapter.send_batch(sends):
            accepted += isinstance(timed.answer, SendResult)
    answers.put(accepted)


def limiter_alone(sizes: Sizes) -> list[Row]:
    """16. Scenario 9's limiter and Telegram adapter without the rest of the pipeline: 4
    processes send 20,000 messages through them, to the fake enforcing 1,000/s per bot.
    Where scenario 9 falls short and this does not, the cores went to the pipeline (the
    claim, the records, PostgreSQL, the dispatcher), not to the limiter."""
    import multiprocessing

    from tests.fakes.telegram_server import FakeTelegram

    reset_state()
    from django.conf import settings

    shipped = settings.CHANNEL_RATE_LIMITS
    settings.CHANNEL_RATE_LIMITS = {**shipped, "telegram": (975, 1)}
    fake = FakeTelegram(global_per_second=1000, per_chat_per_second=1, keep_alive=True).start()
    chats = [str(10_000_000 + n) for n in range(sizes.broadcast)]
    context = multiprocessing.get_context("fork")  # the settings above, as they are
    answers = context.Queue()
    senders = [
        context.Process(
            target=_send_through_the_limiter, args=(chats[n::4], fake.base_url, answers)
        )
        for n in range(4)
    ]
    try:
        for sender in senders:
            sender.start()
        accepted = sum(answers.get(timeout=600) for _ in senders)
        for sender in senders:
            sender.join()
    finally:
        fake.stop()
        settings.CHANNEL_RATE_LIMITS = shipped
    rate, rejected = accepted_rate_and_429s(fake.calls())
    name = f"16. limiter and adapter alone, 1,000/s enforced, {sizes.broadcast} chats, 975/s"
    return [
        Row(name, "achieved rate", rate, "/s", ">= 900 (90% of 1,000/s)", rate >= 900),
        Row(name, "429 answers", rejected, "", "= 0", rejected == 0),
        Row(name, "accepted", accepted, "", f"= {sizes.broadcast}", accepted == sizes.broadcast),
    ]


def _patients_with_plans(count: int, next_at_sql: str) -> int:
    """`count` patients with a check-in plan each (one through the ORM, the rest copied in
    SQL); returns the first patient's id."""
    from django.db import connection
    from django.utils import timezone

    from outreach.models import CheckInPlan
    from patients.models import Organization, Patient

    organization, _ = Organization.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
    patient = Patient.objects.create(organization=organization, name="Bench 0", timezone="UTC",
                                     preferred_channel="web", onboarding_done=True)  # fmt: skip
    plan = CheckInPlan.objects.create(patient=patient)
    CheckInPlan.objects.filter(pk=plan.pk).update(next_at=timezone.now() + timedelta(hours=1))
    with connection.cursor() as cursor:
        _copy_rows(cursor, Patient, patient.pk, {"name": "'Bench ' || g"},
                   f"generate_series(1, {count - 1}) g")  # fmt: skip
        _copy_rows(cursor, CheckInPlan, plan.pk, {"patient_id": "p.id", "next_at": next_at_sql},
                   f"patients_patient p WHERE p.id > {patient.pk}")  # fmt: skip
        cursor.execute("ANALYZE")
    return patient.pk


def check_in_selection(sizes: Sizes) -> list[Row]:
    """10. The check-in planner's tick against a million patients with daily check-ins."""
    from django.db import connection, transaction
    from django.utils import timezone

    from outreach.planning import due_plans, plan_check_ins

    reset_state()
    # Spread over the next day, none due: what a tick meets on most of its runs.
    spread = "now() + interval '1 hour' + mod(p.id, 82800) * interval '1 second'"
    _patients_with_plans(sizes.check_in_plans, spread)
    idle = []
    for _ in range(20):
        started = time.perf_counter()
        plan_check_ins()
        idle.append((time.perf_counter() - started) * 1000)
    with transaction.atomic(), connection.cursor() as cursor:
        sql, params = due_plans(timezone.now(), 500).query.sql_with_params()
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    name = f"10. check-in planner, {sizes.check_in_plans:,} patients with check-ins"
    return [
        Row(name, "idle tick (median of 20)", statistics.median(idle), "ms", "<= 5",
            statistics.median(idle) <= 5),
        Row(name, "due query uses check_in_due_idx", float("check_in_due_idx" in plan), "",
            "yes", "check_in_due_idx" in plan),
    ]  # fmt: skip


def check_in_writing(sizes: Sizes, log_dir: Path) -> list[Row]:
    """11. Check-ins written against a model answering in 1 s, LLM_MAX_CONCURRENCY=8, by
    two writer workers of 6 processes (more processes than slots: the cap is shared)."""
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from outreach.models import CheckIn, CheckInSource
    from outreach.planning import WRITE_TASK
    from scheduling.queueing import publish_task
    from tests.fakes.llm_server import API_KEY, FakeLLM

    reset_state()
    count = sizes.check_ins_written
    first = _patients_with_plans(count, "now() + interval '1 day'")
    due = timezone.now() + timedelta(minutes=20)
    template = CheckIn.objects.create(patient_id=first, local_date=due.date(), due_at=due,
                                      window_ends_at=due + timedelta(minutes=30))  # fmt: skip
    with connection.cursor() as cursor:
        _copy_rows(cursor, CheckIn, template.pk, {"patient_id": "p.id"},
                   f"patients_patient p WHERE p.id > {first}")  # fmt: skip
    fake = FakeLLM().start()
    fake.delay = 1.0
    env = {"LLM_BASE_URL": fake.base_url, "LLM_API_KEY": API_KEY, "LLM_MAX_CONCURRENCY": "8"}
    processes = Processes(log_dir, env)
    for name in ("writer1", "writer2"):
        processes.worker(name, settings.OUTREACH_QUEUE, "--concurrency", "6")
    try:
        time.sleep(3)  # the workers start
        started = time.monotonic()
        for pk in CheckIn.objects.values_list("pk", flat=True):
            publish_task(WRITE_TASK, (pk,), queue=settings.OUTREACH_QUEUE)
        wait_until(lambda: not CheckIn.objects.filter(status="writing").exists(), 600, step=0.2)
        seconds = time.monotonic() - started
    finally:
        processes.stop()
        fake.stop()
    written = CheckIn.objects.filter(source=CheckInSource.LLM).count()
    name = f"11. check-ins written, {count} at once, model answering in 1 s, 8 at a time"
    return [
        Row(name, "written by the model per second", written / seconds, "/s",
            ">= 7 (8 slots / 1 s)", written / seconds >= 7),
        Row(name, "most requests open at once", fake.most_in_flight, "", "<= 8",
            fake.most_in_flight <= 8),
        Row(name, "written by the model", written, "", f"= {count}", written == count),
    ]  # fmt: skip


def rss_mb(pid: int, with_children: bool = True) -> float:
    """Resident memory of a process (and its pool's children), in MB, from /proc."""
    pids = [pid]
    if with_children:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == pid:
                    pids.append(int(entry.name))
    total_kb = 0
    for one in pids:
        try:
            status = Path(f"/proc/{one}/status").read_text()
        except OSError:
            continue
        total_kb += next(int(line.split()[1]) for line in status.splitlines()
                         if line.startswith("VmRSS:"))  # fmt: skip
    return total_kb / 1024


def worker_memory(sizes: Sizes, log_dir: Path) -> list[Row]:
    """7. The delivery worker's memory after few and after many deliveries."""
    from django.conf import settings

    from tests.fakes.telegram_server import FakeTelegram

    early, late = sizes.memory
    reset_state()
    create_due_messages(late, due_in=sizes.lead)
    fake = FakeTelegram(keep_alive=True).start()
    processes = Processes(log_dir, {"TELEGRAM_API_BASE_URL": fake.base_url,
                                    "DELIVERY_RATE_LIMIT_ENABLED": "false",
                                    "DISPATCH_MAX_QUEUED_PER_CHANNEL": "5000"})  # fmt: skip
    processes.worker("dispatcher", "scheduler", "--concurrency", "1")
    worker = processes.worker("memory", "deliver.telegram")
    processes.beat()
    try:
        wait_until(lambda: sent_count() >= early, 600, step=0.2)
        after_early = rss_mb(worker.pid)
        wait_until(lambda: sent_count() >= late, 1200, step=0.5)
        after_late = rss_mb(worker.pid)
    finally:
        processes.stop()
        fake.stop()
    growth = after_late / after_early - 1
    name = (
        f"7. delivery worker memory (prefork {settings.CELERY_WORKER_CONCURRENCY}, main + children)"
    )
    return [
        Row(name, f"RSS after {early:,} deliveries", after_early, "MB", "", None),
        Row(name, f"RSS after {late:,} deliveries", after_late, "MB", "", None),
        Row(name, "growth", growth * 100, "%", "<= 10", growth <= 0.10),
    ]  # fmt: skip


def naive_peer(sizes: Sizes, log_dir: Path) -> list[Row]:
    """8. django-celery-beat used the obvious way, one ClockedSchedule and one one-off
    PeriodicTask per message, against our dispatcher, at the same sizes: from the due
    time to the last task enqueued, and Beat's memory."""
    rows = []
    for count in sizes.naive:
        naive = _naive_beat_run(count, log_dir, sizes.naive_cap)
        ours = _our_dispatch_run(count, log_dir, sizes.lead)
        name = f"8. {count:,} messages due at once"
        if naive["enqueued"] == count:
            naive_label, naive_seconds = "naive Beat: due -> last enqueued", naive["seconds"]
        else:
            naive_seconds = count / naive["rate"] if naive["rate"] else float("inf")
            first = f"{naive['enqueued']:,} in the first {sizes.naive_cap:.0f} s"
            naive_label = f"naive Beat: due -> last enqueued (projected: {first})"
        rows += [
            Row(name, naive_label, naive_seconds, "s", "reference", None),
            Row(name, "ours: due -> last enqueued", ours["seconds"], "s",
                f"< naive ({naive_seconds / ours['seconds']:.0f}x faster)",
                ours["seconds"] < naive_seconds),
            Row(name, "naive Beat: RSS", naive["beat_mb"], "MB", "reference", None),
            Row(name, "ours: Beat RSS", ours["beat_mb"], "MB", "< naive Beat",
                ours["beat_mb"] < naive["beat_mb"]),
            Row(name, "ours: dispatching worker RSS (its work is the naive worker's too)",
                ours["worker_mb"], "MB", "", None),
        ]  # fmt: skip
    return rows


def _naive_beat_run(count: int, log_dir: Path, cap: float) -> dict:
    import redis
    from django.conf import settings
    from django.utils import timezone
    from django_celery_beat.models import ClockedSchedule, PeriodicTask

    reset_state()
    _remove_naive_tasks()
    due = timezone.now()
    clocks = ClockedSchedule.objects.bulk_create(
        [ClockedSchedule(clocked_time=due) for _ in range(count)], batch_size=5000
    )
    PeriodicTask.objects.bulk_create(
        [PeriodicTask(name=f"naive-{n}", task="bench.naive_send", args=f"[{n}]", clocked=clock,
                      one_off=True, queue="naive") for n, clock in enumerate(clocks)],
        batch_size=5000)  # fmt: skip
    client = redis.Redis.from_url(settings.REDIS_URL)
    processes = Processes(log_dir, {})
    beat = processes.beat()
    started, peak_mb = time.monotonic(), 0.0
    try:
        while time.monotonic() - started < cap and client.llen("naive") < count:
            peak_mb = max(peak_mb, rss_mb(beat.pid, with_children=False))
            time.sleep(0.25)
        seconds, enqueued = time.monotonic() - started, client.llen("naive")
    finally:
        processes.stop()
        _remove_naive_tasks()
    return {"seconds": seconds, "enqueued": enqueued, "rate": enqueued / seconds,
            "beat_mb": peak_mb}  # fmt: skip


def _remove_naive_tasks() -> None:
    from django.db import connection
    from django_celery_beat.models import PeriodicTasks

    # In SQL: Django's delete() would send a signal, and django-celery-beat an UPDATE,
    # for each of the 50,000 rows.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM django_celery_beat_periodictask WHERE name LIKE 'naive-%%'")
        cursor.execute("DELETE FROM django_celery_beat_clockedschedule")
    PeriodicTasks.update_changed()


def _our_dispatch_run(count: int, log_dir: Path, lead: float) -> dict:
    import math

    from django.conf import settings

    from scheduling.models import ScheduledMessage
    from scheduling.queueing import queue_length

    reset_state()
    create_due_messages(count, due_in=lead)
    due = ScheduledMessage.objects.order_by("next_run_at").first().next_run_at.timestamp()
    tasks = math.ceil(count / settings.DELIVERY_BATCH_SIZE)
    # Nobody consumes the delivery queue here: this measures due -> enqueued.
    processes = Processes(
        log_dir,
        {"DISPATCH_MAX_QUEUED_PER_CHANNEL": "10000000", "DELIVERY_RATE_LIMIT_ENABLED": "false"},
    )
    worker = processes.worker("dispatcher", "scheduler", "--concurrency", "1")
    beat = processes.beat()
    beat_mb = worker_mb = 0.0
    try:
        deadline = time.monotonic() + 300
        while True:
            beat_mb = max(beat_mb, rss_mb(beat.pid, with_children=False))
            worker_mb = max(worker_mb, rss_mb(worker.pid))
            if queue_length("deliver.telegram") >= tasks or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        seconds = time.time() - due
    finally:
        processes.stop()
    return {"seconds": seconds, "beat_mb": beat_mb, "worker_mb": worker_mb}


# -- Scale-out: worker nodes as pods run them (scenarios 13 and 14) ------------------------

SCALE_NODES = (1, 2, 4)
# Telegram answering in 150 ms; limits far above what 2 cores can send, so that only the
# nodes bind: the fake enforces 100,000/s per bot (and 1/s per chat, each chat getting one
# message), our limiter stays on at 10,000/s.
UNBOUND = {"global_per_second": 100_000, "per_chat_per_second": 1}
UNBOUND_ENV = {"TELEGRAM_RATE_PER_SECOND": "10000"}
# PgBouncer's server connections per database and user (a transaction waits for a free
# one): four per core of this machine, where PostgreSQL shares the cores with the nodes.
PGBOUNCER_POOL_SIZE = 8
PGBOUNCER = "/usr/sbin/pgbouncer"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


def _process_tree(pid: int) -> list[int]:
    """A process and its direct children (a worker node's pool processes), from /proc."""
    pids = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                pids.append(int(entry.name))
    return pids


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _machine_busy_seconds() -> float:
    """CPU time spent by every process on the machine (ours and anyone else's), /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def _established_to(port: int) -> int:
    """Established TCP connections whose local end is 127.0.0.1:port (a server's clients)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        count += fields[3] == "01" and int(fields[1].split(":")[1], 16) == port
    return count


class LoadSampler(threading.Thread):
    """Four times a second during a run: the sessions of our database in pg_stat_activity
    (their peak: the bench's own two excluded), clients connected to a pooler's port, and
    the CPU time of the PostgreSQL sessions, the worker nodes and the pooler. CPU figures
    are taken from mark() (the due time) to finish(), so that start-up does not count."""

    def __init__(self, groups: dict[str, list[int]], pooler_port: int | None = None) -> None:
        super().__init__(daemon=True)
        from django.db import connection

        connection.ensure_connection()
        self.own_session = connection.connection.info.backend_pid
        self.groups, self.pooler_port = groups, pooler_port
        self.peak_sessions = self.peak_clients = 0
        self.latest: dict[tuple[str, int], float] = {}
        self.baseline: dict[tuple[str, int], float] = {}
        self.marked_at = self.finished_at = 0.0
        self.bench_cpu = self.machine_cpu = 0.0
        self.stopping = threading.Event()

    def run(self) -> None:
        import psycopg
        from django.conf import settings

        with psycopg.connect(settings.DATABASE_URL, autocommit=True) as db:
            while not self.stopping.wait(0.25):
                rows = db.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid NOT IN (pg_backend_pid(), %s)",
                    [self.own_session],
                ).fetchall()
                self.peak_sessions = max(self.peak_sessions, len(rows))
                if self.pooler_port:
                    self.peak_clients = max(self.peak_clients, _established_to(self.pooler_port))
                self._read_cpu({"postgres": [pid for (pid,) in rows], **self.groups})

    def _read_cpu(self, groups: dict[str, list[int]]) -> None:
        for group, pids in groups.items():
            for root in pids:
                for pid in _process_tree(root) if group != "postgres" else [root]:
                    seconds = _cpu_seconds(pid)
                    if seconds is not None:
                        self.latest[(group, pid)] = seconds

    def mark(self) -> None:
        self.baseline, self.marked_at = dict(self.latest), time.monotonic()
        self.bench_cpu = -sum(os.times()[:2])
        self.machine_cpu = -_machine_busy_seconds()

    def finish(self) -> None:
        self.finished_at = time.monotonic()
        self.bench_cpu += sum(os.times()[:2])
        self.machine_cpu += _machine_busy_seconds()
        self.stopping.set()
        self.join(5)

    def cpu_seconds(self, group: str) -> float:
        """CPU time the group spent over the run, from the mark."""
        if group in ("bench", "machine"):
            return self.bench_cpu if group == "bench" else self.machine_cpu
        return sum(
            seconds - self.baseline.get(key, 0.0)
            for key, seconds in self.latest.items()
            if key[0] == group
        )

    def cpu_share(self, group: str) -> float:
        """Of the machine's cores, over the run from the mark: 1.0 would be all of them."""
        return self.cpu_seconds(group) / ((self.finished_at - self.marked_at) * CORES)


class PgBouncer:
    """Debian's pgbouncer (deploy/ensure-pgbouncer.sh) in transaction mode on a port of its
    own, in front of the PostgreSQL of DATABASE_URL, with a generated configuration."""

    def __init__(self, work_dir: Path, pool_size: int) -> None:
        import socket

        with socket.socket() as probe:  # a free port
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.work_dir, self.pool_size = work_dir, pool_size
        self.process: subprocess.Popen | None = None

    def url(self, direct_url: str) -> str:
        parsed = urlparse(direct_url)
        return parsed._replace(netloc=f"{parsed.username}@127.0.0.1:{self.port}").geturl()

    def start(self, direct_url: str) -> "PgBouncer":
        parsed = urlparse(direct_url)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.work_dir.chmod(0o755)  # it drops root for the postgres user, who reads these
        (self.work_dir / "users.txt").write_text(f'"{parsed.username}" ""\n')
        config = self.work_dir / "pgbouncer.ini"
        config.write_text(
            f"[databases]\n* = host={parsed.hostname} port={parsed.port or 5432}\n\n"
            f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            f"unix_socket_dir =\nauth_type = trust\nauth_file = {self.work_dir}/users.txt\n"
            f"pool_mode = transaction\ndefault_pool_size = {self.pool_size}\n"
            "max_client_conn = 1000\nignore_startup_parameters = extra_float_digits\n"
        )
        as_user = ["-u", "postgres"] if os.geteuid() == 0 else []  # it refuses to run as root
        log = open(self.work_dir / "pgbouncer.log", "wb")  # noqa: SIM115 - closed at exit
        self.process = subprocess.Popen(
            [PGBOUNCER, *as_user, str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if not wait_until(self._listening, 10):
            raise SystemExit(f"pgbouncer did not start: {self.work_dir / 'pgbouncer.log'}")
        return self

    def _listening(self) -> bool:
        import socket

        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def _scale_run(
    nodes: int,
    count: int,
    log_dir: Path,
    *,
    limits: dict,
    env: dict,
    pooler: PgBouncer | None = None,
) -> dict:
    """`count` messages due at once, sent by `nodes` worker nodes on the delivery queue
    (and one dispatching worker) to a fake Telegram answering in 150 ms."""
    from django.conf import settings

    from tests.fakes.telegram_server import FakeTelegram

    reset_state()
    fake = FakeTelegram(delay=0.15, keep_alive=True, **limits).start()
    run_env = {"TELEGRAM_API_BASE_URL": fake.base_url, **env}
    if pooler:
        run_env |= {
            "DATABASE_URL": pooler.url(settings.DATABASE_URL),
            "DATABASE_POOLER": "transaction",
        }
    processes = Processes(log_dir, run_env)
    processes.worker("scheduler", "scheduler", "--concurrency", "1")
    started = [processes.node(n, "deliver.telegram") for n in range(1, nodes + 1)]
    processes.beat()
    groups = {"nodes": [p.pid for p in started]}
    if pooler:
        groups["pooler"] = [pooler.process.pid]
    sampler = LoadSampler(groups, pooler.port if pooler else None)
    sampler.start()
    try:
        logs = [log_dir / f"node{n}.log" for n in range(1, nodes + 1)]
        wait_until(lambda: all("ready." in log.read_text() for log in logs), 120, step=0.2)
        create_due_messages(count, due_in=2)
        time.sleep(2)
        sampler.mark()
        wait_until(lambda: sent_count() >= count, 1200, step=0.5)
        sampler.finish()
    finally:
        sampler.stopping.set()
        processes.stop()
        fake.stop()
    rate, rejected = accepted_rate_and_429s(fake.calls())
    chats = Counter(call.params.get("chat_id") for call in fake.sent())
    return {
        **delivery_figures(),
        "accepted_rate": rate,
        "answered_429": rejected,
        "sent_twice": sum(times - 1 for times in chats.values()),
        "peak_sessions": sampler.peak_sessions,
        "peak_clients": sampler.peak_clients,
        **{
            f"cpu_{g}": sampler.cpu_share(g)
            for g in ("nodes", "postgres", "pooler", "bench", "machine")
        },
    }


CPU_GROUPS = {
    "nodes": "worker nodes",
    "postgres": "PostgreSQL sessions",
    "bench": "fake Telegram and bench",
    "machine": "whole machine, other work on it included",
}


def cpu_rows(name: str, label: str, run: dict) -> list[Row]:
    """Where the cores went from the due time to the last send: reference figures."""
    return [
        Row(
            name, f"{label}: CPU of {CORES} cores, {what}", run[f"cpu_{group}"] * 100, "%", "", None
        )
        for group, what in CPU_GROUPS.items()
    ]


def scale_out(sizes: Sizes, log_dir: Path) -> list[Row]:
    """13. 1, 2 and 4 worker nodes (each `celery worker` with its own name and the default
    pool, as a pod runs it) on one delivery queue: first with limits that do not bind,
    then at Telegram's own, enforced by the fake with 429s."""
    count, rows, rates = sizes.scale_out, [], {}
    name = f"13. scale-out, {count:,} due at once, provider answering in 150 ms, limits not binding"
    for nodes in SCALE_NODES:
        run = _scale_run(nodes, count, log_dir, limits=UNBOUND, env=UNBOUND_ENV)
        rates[nodes] = run["rate"]
        label = f"{nodes} node{'s' if nodes > 1 else ''}"
        rows += [
            Row(name, f"{label}: deliveries/s", run["rate"], "/s", "reference", None),
            *cpu_rows(name, label, run),
            Row(name, f"{label}: database sessions (peak)", run["peak_sessions"], "", "", None),
            Row(
                name,
                f"{label}: delivered, none twice",
                run["sent"] - run["sent_twice"],
                "",
                f"= {count:,}",
                run["sent"] == count and run["sent_twice"] == 0,
            ),
        ]
    for nodes in SCALE_NODES[1:]:
        factor = rates[nodes] / rates[1]
        rows.append(
            Row(
                name,
                f"scaling factor, {nodes} nodes / 1",
                factor,
                "x",
                "reference (one machine's 2 cores for every node)",
                None,
            )
        )
    limited = (
        f"13. scale-out at Telegram's limits (30/s per bot, 1/s per chat, enforced), "
        f"{sizes.scale_limited} chats, limiter as shipped"
    )
    for nodes in SCALE_NODES:
        run = _scale_run(
            nodes,
            sizes.scale_limited,
            log_dir,
            limits={"global_per_second": 30, "per_chat_per_second": 1},
            env={},
        )
        label = f"{nodes} node{'s' if nodes > 1 else ''}"
        rows += [
            Row(
                limited,
                f"{label}: achieved rate",
                run["accepted_rate"],
                "/s",
                ">= 28.5 (95% of 30/s)",
                run["accepted_rate"] >= 28.5,
            ),
            Row(
                limited,
                f"{label}: 429 answers",
                run["answered_429"],
                "",
                "= 0",
                run["answered_429"] == 0,
            ),
        ]
    return rows


def pgbouncer_scenario(sizes: Sizes, log_dir: Path) -> list[Row]:
    """14. 4 worker nodes straight to PostgreSQL, then through PgBouncer in transaction
    mode (DATABASE_POOLER=transaction): throughput and PostgreSQL's sessions."""
    from django.conf import settings

    subprocess.run([ROOT / "deploy" / "ensure-pgbouncer.sh"], check=True)
    count, nodes = sizes.scale_out, SCALE_NODES[-1]
    direct = _scale_run(nodes, count, log_dir, limits=UNBOUND, env=UNBOUND_ENV)
    pooler = PgBouncer(log_dir / "pgbouncer", PGBOUNCER_POOL_SIZE).start(settings.DATABASE_URL)
    try:
        pooled = _scale_run(nodes, count, log_dir, limits=UNBOUND, env=UNBOUND_ENV, pooler=pooler)
    finally:
        pooler.stop()
    name = (
        f"14. PgBouncer, transaction mode, pool of {PGBOUNCER_POOL_SIZE}; {nodes} nodes, "
        f"{count:,} due at once, 150 ms provider"
    )
    return [
        Row(name, "direct: deliveries/s", direct["rate"], "/s", "reference", None),
        Row(name, "direct: PostgreSQL sessions (peak)", direct["peak_sessions"], "", "", None),
        *cpu_rows(name, "direct", direct),
        Row(name, "PgBouncer: deliveries/s", pooled["rate"], "/s", "reference", None),
        Row(
            name,
            "PgBouncer: PostgreSQL sessions (peak)",
            pooled["peak_sessions"],
            "",
            f"<= {PGBOUNCER_POOL_SIZE}",
            pooled["peak_sessions"] <= PGBOUNCER_POOL_SIZE,
        ),
        Row(name, "PgBouncer: its clients (peak)", pooled["peak_clients"], "", "", None),
        *cpu_rows(name, "PgBouncer", pooled),
        Row(
            name,
            f"PgBouncer: CPU of {CORES} cores, PgBouncer",
            pooled["cpu_pooler"] * 100,
            "%",
            "",
            None,
        ),
        Row(
            name, "PgBouncer / direct, deliveries/s", pooled["rate"] / direct["rate"], "x", "", None
        ),
        Row(
            name,
            "PgBouncer: delivered, none twice",
            pooled["sent"] - pooled["sent_twice"],
            "",
            f"= {count:,}",
            pooled["sent"] == count and pooled["sent_twice"] == 0,
        ),
    ]


# -- Scenario 15: a long history, and its clean-up ------------------------------------------

HISTORY_MESSAGES = 1000  # the history's deliveries are spread over so many messages


def retention_at_scale(sizes: Sizes, log_dir: Path) -> list[Row]:
    """15. The dispatcher and the senders with a small deliveries table, then with
    `history_rows` final deliveries (and their attempts) behind them, then while the
    retention clean-up deletes the oldest of those; and the clean-up's batches."""
    import threading

    from django.db import connection

    from operations.retention import clean_up_old_data

    reset_state()
    small = _dispatch_and_deliver(sizes.history_due, log_dir)
    began = time.monotonic()
    _fill_history(sizes.history_rows)
    fill_seconds = time.monotonic() - began
    large = _dispatch_and_deliver(sizes.history_due, log_dir)
    report = {}

    def clean_up() -> None:
        began = time.monotonic()
        report["run"] = clean_up_old_data(kinds=["deliveries"])
        report["seconds"] = time.monotonic() - began
        connection.close()

    cleaner = threading.Thread(target=clean_up)
    cleaner.start()
    during = _dispatch_and_deliver(sizes.history_due, log_dir)
    cleaner.join()
    run = report["run"]
    batches = sorted(run.batch_ms)
    deleted = run.deleted["deliveries"]
    name = f"15. retention, {sizes.history_rows:,} deliveries + attempts"
    return [
        Row(name, "filling them (generate_series)", fill_seconds, "s", "", None),
        Row(name, "idle tick, small table", small["idle_ms"], "ms", "", None),
        Row(name, "idle tick, large / small", large["idle_ms"] / small["idle_ms"], "", "<= 1.5",
            large["idle_ms"] / small["idle_ms"] <= 1.5),
        Row(name, f"claim + enqueue {sizes.history_due:,}, small table", small["dispatch_s"],
            "s", "", None),
        Row(name, f"claim + enqueue {sizes.history_due:,}, large / small",
            large["dispatch_s"] / small["dispatch_s"], "", "<= 1.5",
            large["dispatch_s"] / small["dispatch_s"] <= 1.5),
        Row(name, "deliveries/s, small table", small["rate"], "/s", "", None),
        Row(name, "deliveries/s, large / small", large["rate"] / small["rate"], "", ">= 0.8",
            large["rate"] / small["rate"] >= 0.8),
        Row(name, "deliveries/s during the clean-up / small", during["rate"] / small["rate"], "",
            ">= 0.8", during["rate"] / small["rate"] >= 0.8),
        Row(name, "clean-up: deliveries deleted in one run", deleted, "", "", None),
        Row(name, "clean-up: the run's time (picks and pauses too)", report["seconds"], "s",
            f"<= {_max_seconds()} + 1 batch", None),
        Row(name, "clean-up: stopped at RETENTION_MAX_SECONDS (1 = yes)",
            float(run.stopped_early), "", "", None),
        Row(name, "clean-up: deleted per second of the run", deleted / report["seconds"], "/s",
            "", None),
        Row(name, f"clean-up: batches of {_batch_size()}", len(batches), "", "", None),
        Row(name, "clean-up: median batch (locks held)", statistics.median(batches) if batches
            else 0.0, "ms", "", None),
        Row(name, "clean-up: longest batch (locks held)", run.longest_batch_ms, "ms", "<= 1000",
            run.longest_batch_ms <= 1000),
    ]  # fmt: skip


def _batch_size() -> int:
    from django.conf import settings

    return settings.RETENTION_BATCH_SIZE


def _max_seconds() -> int:
    from django.conf import settings

    return settings.RETENTION_MAX_SECONDS


def _fill_history(rows: int) -> None:
    """`rows` final deliveries, an hour apart per message and reaching back past the
    retention of a year, each with its attempt: in SQL, a chunk of messages at a time."""
    from django.db import connection

    from scheduling.models import Delivery, DeliveryAttempt, ScheduledMessage

    messages = min(HISTORY_MESSAGES, rows)
    before = set(ScheduledMessage.objects.values_list("pk", flat=True))
    create_due_messages(messages, due_in=86400)
    ids = sorted(set(ScheduledMessage.objects.values_list("pk", flat=True)) - before)
    ScheduledMessage.objects.filter(pk__in=ids).update(
        status="completed", next_run_at=None, next_occurrence_at=None
    )
    per_message = rows // messages
    at = f"now() - g * interval '1 hour' * {10_000 / per_message}"
    values = {
        "message_id": "m.id", "occurrence_at": at, "channel": "'telegram'", "contact_id": "NULL",
        "status": "(ARRAY['sent','sent','sent','failed','expired'])[1 + g %% 5]",
        "attempts": "1", "attempts_before_retry": "0", "next_attempt_at": at,
        "expires_at": f"{at} + interval '1 hour'", "lease_until": "NULL", "held_at": "NULL",
        "sent_at": at, "provider_message_id": "g::text", "priority": "3", "parts_sent": "1",
        "provider_status": "''", "provider_status_at": "NULL", "error_code": "''",
        "error_text": "''", "created_at": at, "updated_at": at,
    }  # fmt: skip
    columns = [f.column for f in Delivery._meta.concrete_fields if f.column != "id"]
    attempt_columns = "delivery_id, number, started_at, finished_at, outcome, error_code, " \
        "error_text, duration_ms"  # fmt: skip
    chunk = 50
    with connection.cursor() as cursor:
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk]
            cursor.execute(
                f"INSERT INTO {Delivery._meta.db_table} ({', '.join(columns)}) "  # noqa: S608
                f"SELECT {', '.join(values[c] for c in columns)} FROM scheduling_scheduledmessage "
                f"m, generate_series(1, {per_message}) g WHERE m.id = ANY(%s)", [part]
            )  # fmt: skip
            cursor.execute(
                f"INSERT INTO {DeliveryAttempt._meta.db_table} ({attempt_columns}) "  # noqa: S608
                "SELECT id, 1, occurrence_at, occurrence_at, 'sent', '', '', 120 "
                f"FROM {Delivery._meta.db_table} WHERE message_id = ANY(%s)", [part]
            )  # fmt: skip
            print(f"  history: {(start + len(part)) * per_message:,} of {rows:,}", flush=True)
        cursor.execute("VACUUM ANALYZE scheduling_delivery")
        cursor.execute("VACUUM ANALYZE scheduling_deliveryattempt")


def _dispatch_and_deliver(count: int, log_dir: Path) -> dict:
    """The dispatcher's idle tick and its claim of `count` due messages, timed in this
    process; then a worker (and Beat, which releases what backpressure held) sends them."""
    from django.utils import timezone

    from scheduling.dispatch import dispatch_due
    from scheduling.models import Delivery, DeliveryStatus, ScheduledMessage
    from tests.fakes.telegram_server import FakeTelegram

    idle = []
    for _ in range(20):
        started = time.perf_counter()
        dispatch_due()
        idle.append((time.perf_counter() - started) * 1000)
    last_message = ScheduledMessage.objects.order_by("-pk").values_list("pk", flat=True).first()
    create_due_messages(count, due_in=0)
    time.sleep(1)
    started = time.perf_counter()
    dispatch_due(now=timezone.now())
    dispatch_s = time.perf_counter() - started
    fresh = Delivery.objects.filter(message_id__gt=last_message or 0)
    fake = FakeTelegram(keep_alive=True).start()
    processes = Processes(log_dir, {"TELEGRAM_API_BASE_URL": fake.base_url,
                                    "DELIVERY_RATE_LIMIT_ENABLED": "false"})  # fmt: skip
    processes.worker("history", "scheduler,deliver.telegram")
    processes.beat()
    try:
        wait_until(lambda: fresh.filter(status=DeliveryStatus.SENT).count() >= count, 600, 0.5)
    finally:
        processes.stop()
        fake.stop()
    sent = sorted(fresh.filter(status=DeliveryStatus.SENT).values_list("sent_at", flat=True))
    span = (sent[-1] - sent[0]).total_seconds() if len(sent) > 1 else 0.0
    return {"idle_ms": statistics.median(idle), "dispatch_s": dispatch_s,
            "rate": len(sent) / span if span > 0 else 0.0}  # fmt: skip


NOTES = """\
The fake Telegram keeps each worker's connections open and answers in one TCP segment,
as Telegram does; the 150 ms of scenario 3 is its answer time.

Scenario 6 runs with the default Telegram limiter, 29/s (one under Telegram's 30/s, so
that network jitter cannot push 31 sends into one second): the best it can reach is
96.7% of 30/s.

Scenario 8: every message is due when Beat starts, so the naive design's time includes
loading its schedule, which django-celery-beat's DatabaseScheduler does again whenever a
periodic task is added or changed (each one-off task it runs is saved as disabled).
Where it had not finished within its time, its figure is projected from the rate it
reached. Ours is the dispatcher (Beat's tick plus one worker) with nobody consuming the
delivery queue.

Scenario 9: the fake enforces Telegram's paid broadcast rate, 1,000/s per bot, with 429s;
ours at 975/s. Its first seconds share the 2 cores with the dispatcher turning 20,000
due messages into deliveries at once; the median second after the fifth shows the
limiter's own pace. What it took: docs/reliability.md, item 15.

Scenario 10 reads like scenario 4: the planner's idle tick against a million check-in
plans spread over the next day. Scenario 11: check-ins written against a fake model that
answers in 1 s, with LLM_MAX_CONCURRENCY=8 shared by two writers of 6 processes each:
8 a second is the ceiling.

Scenarios 13 and 14: a worker node is a `celery worker` with the default pool (prefork,
two processes per core: 4), named bench-N@host, on the delivery queue; one more worker,
the same in each run, dispatches. Every node shares this machine's 2 cores with
PostgreSQL, Redis and the fake provider (which runs in the bench's own process), so the
scaling factor says how the nodes share one machine, not what more machines would give;
the CPU rows say where the cores went from the due time to the last send ("whole
machine" includes whatever else ran on it). Sessions are those of the bench's database
in pg_stat_activity, the bench's own excluded. In 14, PgBouncer runs in transaction mode
with 8 server connections per database and user, and the workers and Beat connect
through it with DATABASE_POOLER=transaction.

Scenario 16: scenario 9's reservation and sends (the same batch size, inline wait and
lead, the Telegram adapter, the fake enforcing 1,000/s) in 4 processes of the bench, with
no database, Celery or dispatcher: what the limiter reaches when the cores are its own.

Scenario 15: BENCH_HISTORY_ROWS sets the history's size (10,000,000 in the full run).
The clean-up runs in a thread of the benchmark's process beside the third measure, with
the shipped settings (batches of RETENTION_BATCH_SIZE, RETENTION_MAX_SECONDS a run); a
batch's time is its transaction's, the longest any of its row locks is held.

Where the time per delivery goes and what the targets took: docs/design-decisions.md,
section *Throughput*. The dispatcher's query plan: docs/benchmarks-dispatch-plan.txt.
"""


# -- Report --------------------------------------------------------------------------------


QUICK_NOTE = """\
This is the quick run: its sizes check that every scenario works, and are too small for
the targets of scenarios 3 and 6 (a few seconds of sending, where starting up weighs) and
of 4 and 7 (a smaller table, fewer deliveries). `make bench` gives the figures that count.
"""


def write_report(rows: list[Row], mode: str, seconds: float, timings: dict[str, float],
                 done: bool = True) -> None:  # fmt: skip
    """Written after every scenario, so a run cut short still leaves what it measured."""
    took = ", ".join(f"{n}: {t:.0f} s" for n, t in timings.items())
    lines = [
        "# Benchmarks",
        "",
        f"`make bench{'-quick' if mode == 'quick' else ''}` on this machine (2 cores), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {seconds:.0f} s in all"
        f"{'' if done else ' (INCOMPLETE: the run stopped before its last scenario)'}. "
        "Figures from one run; ratios compare figures of the same run. Time per scenario: "
        f"{took}.",
        "",
        "| scenario | figure | value | target | met |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        met = "reference" if row.met is None else ("yes" if row.met else "**no**")
        lines.append(f"| {row.scenario} | {row.figure} | {row.value:,.2f} {row.unit} | "
                     f"{row.target} | {met} |")  # fmt: skip
    lines += ["", *([QUICK_NOTE] if mode == "quick" else []), NOTES]
    (ROOT / "docs" / "benchmarks.md").write_text("\n".join(lines))
    (ROOT / "docs" / "benchmarks.json").write_text(
        json.dumps({"mode": mode, "complete": done, "seconds": round(seconds),
                    "scenario_seconds": {n: round(t) for n, t in timings.items()},
                    "rows": [asdict(r) for r in rows]}, indent=2) + "\n"
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated scenario numbers")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if rows := os.environ.get("BENCH_HISTORY_ROWS"):
        sizes = replace(sizes, history_rows=int(rows))
    only = set(filter(None, args.only.split(",")))
    prepare_database()
    log_dir = ROOT / ".bench-logs"
    log_dir.mkdir(exist_ok=True)
    started = time.monotonic()
    mode = "quick" if args.quick else "full"
    rows, ceiling_rate = ceiling(sizes, log_dir)
    timings = {"1": time.monotonic() - started}
    steps = {"2": lambda: end_to_end(sizes, log_dir, ceiling_rate),
             "3": lambda: slow_provider(sizes, log_dir),
             "4": lambda: dispatcher_cost(sizes, log_dir),
             "5": lambda: steady_load(sizes, log_dir),
             "6": lambda: provider_limits(sizes, log_dir),
             "7": lambda: worker_memory(sizes, log_dir),
             "8": lambda: naive_peer(sizes, log_dir),
             "9": lambda: broadcast_rate(sizes, log_dir),
             "10": lambda: check_in_selection(sizes),
             "11": lambda: check_in_writing(sizes, log_dir),
             "12": lambda: encryption_cost(sizes, log_dir),
             "13": lambda: scale_out(sizes, log_dir),
             "14": lambda: pgbouncer_scenario(sizes, log_dir),
             "15": lambda: retention_at_scale(sizes, log_dir),
             "16": lambda: limiter_alone(sizes)}  # fmt: skip
    chosen = [n for n in steps if not only or n in only]
    for number in chosen:
        began = time.monotonic()
        rows += steps[number]()
        timings[number] = time.monotonic() - began
        print(f"scenario {number} done in {timings[number]:.0f} s", flush=True)
        write_report(rows, mode, time.monotonic() - started, timings, number == chosen[-1])
    if not chosen:
        write_report(rows, mode, time.monotonic() - started, timings)
    for row in rows:
        print(f"{row.scenario:60} {row.figure:34} {row.value:12,.2f} {row.unit:4} {row.target}")


if __name__ == "__main__":
    main()
