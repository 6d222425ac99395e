"""Chaos harness: real worker and Beat processes, and the faults done to them.

Each scenario creates its deliveries first and then starts the processes, so that every
delivery is due at once when Beat's first tick runs. Everything a test starts (worker and
Beat processes, a Redis server, a TCP proxy, the fake Telegram server) is stopped by the
fixtures, also when the test fails or times out.

Figures: each test prints one line (CHAOS ...) and, if CHAOS_FIGURES_FILE names a file,
appends the same figures to it as a JSON line. Message texts and patient names are never
printed: deliveries are reported by counts only.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings
from django.utils import timezone

from patients.models import Channel, Contact, Organization, Patient
from scheduling.models import (
    FINAL_DELIVERY_STATUSES,
    AttemptOutcome,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
)
from scheduling.services import message_schedule
from tests.conftest import ROOT, test_database_url

CELERY = str(Path(sys.executable).parent / "celery")
CHAOS_DIR = Path(__file__).resolve().parent
TELEGRAM_QUEUE = "deliver.telegram"
# Short recovery settings, so a lost send or task comes back within seconds: a send is
# taken for dead 10 s after its claim, the reaper runs every 5 s, and a queued delivery
# whose task has not started 10 s after it was due is published again.
RECOVERY_ENV = {
    "DELIVERY_LEASE_SECONDS": 10,
    "DELIVERY_REAPER_SECONDS": 5,
    "TELEGRAM_TIMEOUT_SECONDS": 2,  # the lease must be more than twice this
    "DELIVERY_REQUEUE_AFTER_SECONDS": 10,
}
REAPER_LINE = re.compile(r"reaper: (\d+) sends lost their worker, (\d+) queued deliveries lost")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "chaos: starts real processes and breaks them (kill -9, Redis, PostgreSQL)"
    )


def pytest_collection_modifyitems(config, items):
    """Opt-in: these take about five minutes and load the machine, so a plain `pytest`
    (make test) skips them. They run when the command names tests/chaos (or a file in it),
    selects them with -m chaos, or CHAOS_TESTS=1 is set."""
    if _chaos_asked_for(config):
        return
    skip = pytest.mark.skip(reason="chaos tests run on request: pytest tests/chaos, or -m chaos")
    for item in items:
        if "chaos" in item.keywords:
            item.add_marker(skip)


def _chaos_asked_for(config) -> bool:
    if os.environ.get("CHAOS_TESTS") == "1":
        return True
    if re.search(r"(?<!not )\bchaos\b", config.option.markexpr or ""):
        return True
    for arg in config.args:
        path = Path(config.invocation_params.dir, arg.split("::")[0]).resolve()
        if path == CHAOS_DIR or CHAOS_DIR in path.parents:
            return True
    return False


# --- processes ---------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    """Direct children of a process (a prefork worker's pool processes), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses; the fields after it do not.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _sockets_to_port(port: int) -> set[str]:
    """Inodes of established TCP connections to 127.0.0.1:port."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state, inode = fields[2], fields[3], fields[9]
        if state == "01" and int(remote.split(":")[1], 16) == port:
            inodes.add(inode)
    return inodes


def _holds_socket(pid: int, inodes: set[str]) -> bool:
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            link = os.readlink(fd)
            if link.startswith("socket:[") and link[8:-1] in inodes:
                return True
    except OSError:
        return False
    return False


class ChaosStack:
    """Named `celery worker` processes and one `celery beat`, each in its own session so
    a kill reaches the worker's pool children too. Each start writes its own log."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        self.processes: dict[str, subprocess.Popen] = {}
        self.args: dict[str, list[str]] = {}
        self.starts: Counter = Counter()

    def start_worker(self, name: str, concurrency: int, extra_queues: tuple[str, ...] = ()) -> None:
        queues = ",".join(
            [
                django_settings.SCHEDULER_QUEUE,
                django_settings.INBOUND_QUEUE,
                *django_settings.DELIVERY_QUEUES.values(),
                *extra_queues,
            ]
        )
        self._start(name, ["worker", "--queues", queues, "--concurrency", str(concurrency),
                           "--loglevel", "INFO", "--hostname", f"chaos-{name}-{os.getpid()}@%h",
                           "--without-gossip", "--without-mingle"])  # fmt: skip

    def start_beat(self, name: str = "beat") -> None:
        self._start(name, ["beat", "--loglevel", "INFO", "--pidfile=", "--max-interval", "1"])

    def restart(self, name: str) -> None:
        self._start(name, self.args[name])

    def _start(self, name: str, args: list[str]) -> None:
        self.starts[name] += 1
        self.args[name] = args
        path = self.log_dir / f"{name}.{self.starts[name]}.log"
        with open(path, "wb") as log:
            self.processes[name] = subprocess.Popen(
                [CELERY, "-A", "companion", *args], cwd=ROOT, env=self.env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def log(self, name: str, last_start_only: bool = False) -> str:
        first = self.starts[name] if last_start_only else 1
        parts = []
        for number in range(first, self.starts[name] + 1):
            path = self.log_dir / f"{name}.{number}.log"
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "".join(parts)

    def logs_tail(self, chars: int = 3000) -> str:
        tails = [f"--- {name} ---\n{self.log(name)[-chars:]}" for name in self.processes]
        return "\n".join([*tails, f"(all logs in {self.log_dir})"])

    def reaped(self) -> dict[str, int]:
        """What the reaper re-queued over the run, from the workers' logs: sends whose lease
        ran out, and queued deliveries it took for lost (or that were only waiting)."""
        totals = {"reaped_leases": 0, "reaped_queued": 0}
        for name in self.processes:
            for match in REAPER_LINE.finditer(self.log(name)):
                totals["reaped_leases"] += int(match[1])
                totals["reaped_queued"] += int(match[2])
        return totals

    def wait_ready(self, *names: str, timeout: float = 60) -> None:
        """Workers only: until each logs that it is ready to take tasks."""
        deadline = time.monotonic() + timeout
        for name in names:
            while "ready." not in self.log(name, last_start_only=True):
                if self.processes[name].poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"{name} did not start:\n{self.log(name)[-4000:]}")
                time.sleep(0.1)

    def pool_children(self, name: str) -> list[int]:
        return _children(self.processes[name].pid)

    def sending_children(self, name: str, port: int) -> list[int]:
        """Pool processes of this worker with a request open to the fake provider now."""
        inodes = _sockets_to_port(port)
        return [pid for pid in self.pool_children(name) if _holds_socket(pid, inodes)]

    def kill9(self, name: str) -> None:
        """SIGKILL the whole worker: its main process and every pool process."""
        process = self.processes[name]
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(15)

    def stop(self) -> None:
        # SIGTERM to the main process only: a warm shutdown, which ends its pool itself.
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        # Pool processes orphaned by a SIGKILLed main process may outlive it briefly.
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def log_dir(request) -> Path:
    """Process logs, kept after the test (pytest's tmp_path keeps only the last few runs,
    shared with whoever else runs pytest on the machine): one directory per test, emptied
    when the test starts again. CHAOS_LOG_DIR moves them."""
    base = Path(os.environ.get("CHAOS_LOG_DIR") or Path(tempfile.gettempdir()) / "chaos-logs")
    path = base / request.node.name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@pytest.fixture
def chaos_stack(transactional_db, fake_telegram, broker, settings, log_dir):
    """make(**env) returns a ChaosStack (processes not started yet) wired to the test
    database, Redis db REDIS_URL (or a `REDIS_URL` given) and the fake provider."""
    from scheduling.periodic import register_periodic_tasks

    stacks: list[ChaosStack] = []

    def make(**overrides: str) -> ChaosStack:
        env = {
            **os.environ,
            "DATABASE_URL": test_database_url(),
            "REDIS_URL": django_settings.REDIS_URL,
            "TELEGRAM_API_BASE_URL": fake_telegram.base_url,
            "TELEGRAM_BOT_TOKEN": django_settings.TELEGRAM_BOT_TOKEN,
            "SCHEDULER_TICK_SECONDS": "1",
            "DATABASE_CONN_MAX_AGE": "0",
            # Never the message text: the worker logs carry delivery ids only.
            "LOG_LEVEL": "INFO",
            **{key: str(value) for key, value in overrides.items()},
        }
        # Beat reads the periodic tasks' intervals from the database, written here by the
        # test process: give it the intervals the workers are configured with.
        settings.SCHEDULER_TICK_SECONDS = int(env["SCHEDULER_TICK_SECONDS"])
        settings.DELIVERY_REAPER_SECONDS = int(
            env.get("DELIVERY_REAPER_SECONDS", django_settings.DELIVERY_REAPER_SECONDS)
        )
        register_periodic_tasks()
        stack = ChaosStack(log_dir, env)
        stacks.append(stack)
        return stack

    try:
        yield make
    finally:
        for stack in stacks:
            stack.stop()


# --- a Redis server of the test's own --------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """redis-server without persistence on a port of its own: killing it loses everything."""

    def __init__(self, port: int, work_dir: Path) -> None:
        self.port = port
        self.work_dir = work_dir
        self.process: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.starts += 1
        with open(self.work_dir / f"redis.{self.starts}.log", "wb") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(self.work_dir)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.05)

    def kill9(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill9()


@pytest.fixture
def redis_for_everyone(own_redis, settings):
    """The test's own Redis for the test process as well, so nothing here can touch the
    shared server, which others' tests are using."""
    from companion.celery import app

    previous = app.conf.broker_url
    settings.REDIS_URL = own_redis.url
    settings.CELERY_BROKER_URL = own_redis.url
    app.conf.broker_url = own_redis.url
    try:
        yield own_redis
    finally:
        app.conf.broker_url = previous


# --- deliveries and what became of them --------------------------------------------------


def telegram_patients(clinic: str, count: int, *, first_chat: int) -> list[Patient]:
    """A clinic named `clinic` with `count` patients in UTC, each with a verified Telegram
    chat of their own (ids from first_chat up)."""
    slug = f"{clinic.lower()}-clinic"
    organization = Organization.objects.create(name=f"{clinic} clinic", slug=slug)
    patients = Patient.objects.bulk_create(
        Patient(organization=organization, name=f"{clinic} patient {n}", timezone="UTC",
                preferred_channel=Channel.TELEGRAM)
        for n in range(count)
    )  # fmt: skip
    Contact.objects.bulk_create(
        Contact(patient=patient, channel=Channel.TELEGRAM, address=str(first_chat + n),
                verified_at=timezone.now())
        for n, patient in enumerate(patients)
    )  # fmt: skip
    return patients


def schedule_due_messages(count: int, *, chats: int | None = None, due_in: float = 2.0):
    """`count` one-time Telegram messages, all due at the same second, to `chats` distinct
    chats (round robin, so some chats get several when chats < count). Returns the due
    time. Texts are unique so the fake's log can be matched to deliveries."""
    chats = chats or count
    due = (timezone.now() + timedelta(seconds=due_in)).replace(microsecond=0)
    patients = telegram_patients("Chaos", chats, first_chat=900_000_000)
    for n in range(count):
        message_schedule(
            patient=patients[n % chats],
            content=f"Chaos check {n}",
            starts_at=due,
            channel=Channel.TELEGRAM,
        )
    return due


def wait_until_final(expected: int, timeout: float, *, poll: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if final_count() >= expected:
            return True
        time.sleep(poll)
    return final_count() >= expected


def final_count() -> int:
    return Delivery.objects.filter(status__in=FINAL_DELIVERY_STATUSES).count()


def status_counts() -> dict[str, int]:
    return dict(Counter(Delivery.objects.values_list("status", flat=True)))


@dataclass
class Tally:
    """What happened to every scheduled message, from our database and the fake's log."""

    expected: int
    delivered: int  # deliveries recorded sent
    failed: int
    expired: int
    lost: int  # scheduled, but without a final delivery at the end
    duplicates: int  # deliveries the provider accepted more than once
    crash_window: int  # of those, explained by an interrupted attempt (documented)
    unexplained_duplicates: int  # the rest: must be 0
    interrupted_attempts: int
    sent_not_received: int  # recorded sent, but the provider never accepted it
    received_not_sent: int  # accepted by the provider, but not recorded sent
    sent_without_one_sent_attempt: int  # a sent delivery needs exactly one sent attempt
    answered_429: int
    answered_5xx: int
    provider_calls: int


def tally(fake, expected: int) -> Tally:
    accepted = Counter(call.params.get("text") for call in fake.sent())
    calls = fake.calls()
    interrupted = Counter(
        DeliveryAttempt.objects.filter(outcome=AttemptOutcome.INTERRUPTED).values_list(
            "delivery_id", flat=True
        )
    )
    sent_attempts = Counter(
        DeliveryAttempt.objects.filter(outcome=AttemptOutcome.SENT).values_list(
            "delivery_id", flat=True
        )
    )
    statuses = Counter()
    duplicates = crash_window = unexplained = sent_not_received = received_not_sent = 0
    bad_attempts = 0
    for pk, status, text in Delivery.objects.values_list("pk", "status", "message__content"):
        statuses[status] += 1
        times = accepted[text]
        if times > 1:
            duplicates += 1
            if interrupted[pk] >= times - 1:
                crash_window += 1
            else:
                unexplained += 1
        if status == DeliveryStatus.SENT:
            sent_not_received += times == 0
            bad_attempts += sent_attempts[pk] != 1
        elif times and not interrupted[pk]:
            received_not_sent += 1
    final = sum(statuses[s] for s in FINAL_DELIVERY_STATUSES)
    return Tally(
        expected=expected,
        delivered=statuses[DeliveryStatus.SENT],
        failed=statuses[DeliveryStatus.FAILED],
        expired=statuses[DeliveryStatus.EXPIRED],
        lost=expected - final,
        duplicates=duplicates,
        crash_window=crash_window,
        unexplained_duplicates=unexplained,
        interrupted_attempts=sum(interrupted.values()),
        sent_not_received=sent_not_received,
        received_not_sent=received_not_sent,
        sent_without_one_sent_attempt=bad_attempts,
        answered_429=sum(c.status == 429 for c in calls),
        answered_5xx=sum(500 <= c.status < 600 for c in calls),
        provider_calls=len(calls),
    )


def report(scenario: str, result: Tally, seconds: float, **extra) -> dict:
    """One line per test on stdout, and a JSON line in CHAOS_FIGURES_FILE if set."""
    figures = {"scenario": scenario, **asdict(result), "seconds": round(seconds, 1), **extra}
    shown = ("delivered", "duplicates", "lost", "answered_429", "crash_window", "seconds")
    rest = {k: v for k, v in figures.items() if k not in shown and k != "scenario"}
    print(
        f"\nCHAOS {scenario}: delivered={result.delivered}/{result.expected} "
        f"duplicates={result.duplicates} lost={result.lost} 429s={result.answered_429} "
        f"crash_window={result.crash_window} seconds={seconds:.1f} | "
        + " ".join(f"{k}={v}" for k, v in rest.items())
    )
    path = os.environ.get("CHAOS_FIGURES_FILE")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps(figures) + "\n")
    return figures


def assert_each_delivered_once(result: Tally, *, allow_failed: int = 0) -> None:
    """The guarantees: none lost, none sent twice outside the crash window, the database
    and the provider agree."""
    assert result.lost == 0, result
    assert result.unexplained_duplicates == 0, result
    assert result.sent_not_received == 0, result
    assert result.received_not_sent == 0, result
    assert result.sent_without_one_sent_attempt == 0, result
    assert result.failed <= allow_failed, result
    assert result.expired == 0, result
    assert result.delivered + result.failed == result.expected, result
