import base64
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings
from django.utils import timezone

from patients.models import Channel, Contact, Organization, Patient
from tests.fakes.llm_server import API_KEY, FakeLLM
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.weather_server import FakeWeather

ROOT = Path(__file__).resolve().parent.parent
CELERY = str(Path(sys.executable).parent / "celery")


@pytest.fixture
def fake_telegram(settings):
    """A fake Bot API server, and settings pointing the Telegram adapter at it."""
    fake = FakeTelegram().start()
    settings.TELEGRAM_API_BASE_URL = fake.base_url
    settings.TELEGRAM_BOT_TOKEN = "123456:TEST-TOKEN"
    settings.CHANNEL_SANDBOX = False
    yield fake
    fake.stop()


@pytest.fixture
def fake_llm(settings):
    """A fake OpenAI-compatible server, and the settings pointing the client at it."""
    fake = FakeLLM().start()
    settings.LLM_BASE_URL = fake.base_url
    settings.LLM_API_KEY = API_KEY
    settings.LLM_MODEL = "companion-test"
    settings.LLM_TIMEOUT_SECONDS = 2
    yield fake
    fake.stop()


@pytest.fixture
def fake_weather(settings):
    """A fake Open-Meteo (forecast and geocoding) and OpenWeather server."""
    fake = FakeWeather().start()
    settings.OPEN_METEO_BASE_URL = fake.origin
    settings.GEOCODING_BASE_URL = fake.origin
    settings.OPENWEATHER_BASE_URL = fake.origin
    yield fake
    fake.stop()


class Broker:
    """The test Redis database (REDIS_URL, db 15 by default), emptied around each test."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)

    @staticmethod
    def priority_lists(queue: str) -> list[str]:
        """The Redis lists of a queue, in the order workers take from them."""
        options = django_settings.CELERY_BROKER_TRANSPORT_OPTIONS
        steps = options["priority_steps"][1:]
        return [queue, *(f"{queue}{options['sep']}{step}" for step in steps)]

    def queue_length(self, queue: str) -> int:
        return sum(self.client.llen(name) for name in self.priority_lists(queue))

    def queued_batches(self, queue: str) -> list[list[int]]:
        """The delivery ids each waiting deliver_message task carries, in the order a
        worker takes them: the most urgent step first, oldest first within it."""
        batches = []
        for name in self.priority_lists(queue):
            for raw in reversed(self.client.lrange(name, 0, -1)):
                body = json.loads(base64.b64decode(json.loads(raw)["body"]))
                batches.append(body[0][0])
        return batches

    def queued_deliveries(self, queue: str) -> list[int]:
        """Every delivery id waiting in the queue, in publishing order."""
        return [pk for batch in self.queued_batches(queue) for pk in batch]

    def drain(self, queue: str) -> None:
        """Empties the queue, as workers taking every task would."""
        self.client.delete(*self.priority_lists(queue))

    def flush(self) -> None:
        self.client.flushdb()


@pytest.fixture(autouse=True)
def shared_limits_reset():
    """Rate-limit buckets, breakers and Django's cache (API throttles, the health report)
    live in Redis; each test starts with none."""
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    for pattern in ("ratelimit:*", "breaker:*", "cache:*", "feeding:*"):
        for key in client.scan_iter(pattern):
            client.delete(key)
    yield


@pytest.fixture
def broker():
    broker = Broker(django_settings.REDIS_URL)
    broker.flush()
    yield broker
    broker.flush()


@pytest.fixture
def organization(db):
    return Organization.objects.create(name="Clinic A", slug="clinic-a")


@pytest.fixture
def make_patient(organization):
    counter = iter(range(1, 1_000_000))

    def make(*, chat_id: str | None = "auto", zone: str = "Europe/Berlin", org=None) -> Patient:
        number = next(counter)
        patient = Patient.objects.create(
            organization=org or organization,
            name=f"Patient {number}",
            timezone=zone,
            preferred_channel=Channel.TELEGRAM if chat_id else Channel.WEB,
        )
        if chat_id:
            address = f"{700000 + number}" if chat_id == "auto" else chat_id
            Contact.objects.create(patient=patient, channel=Channel.TELEGRAM, address=address,
                                   verified_at=timezone.now())  # fmt: skip
        return patient

    return make


@pytest.fixture
def demo_client(client, organization):
    """A test client logged in as the demo care-team user, a member of the demo clinic
    and of the `organization` fixture's clinic."""
    from django.contrib.auth.models import User

    from patients.models import Membership
    from scheduling.demo import create_demo_data

    create_demo_data()
    user = User.objects.get(username="demo")
    Membership.objects.create(user=user, organization=organization)
    client.force_login(user)
    return client


@pytest.fixture
def patient(make_patient):
    return make_patient()


def ago(seconds: float):
    """A moment in whole seconds, as schedules keep them."""
    return (timezone.now() - timedelta(seconds=seconds)).replace(microsecond=0)


def from_now(seconds: float):
    return (timezone.now() + timedelta(seconds=seconds)).replace(microsecond=0)


class CeleryStack:
    """Real `celery worker` and `celery beat` processes against the test database."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        self.processes: dict[str, subprocess.Popen] = {}
        self.beat_args: list[str] = []

    def start(self, name: str, args: list[str]) -> None:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.processes[name] = subprocess.Popen(
            [CELERY, "-A", "companion", *args], cwd=ROOT, env=self.env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for_log(self, name: str, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log(name):
                return
            if self.processes[name].poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{name} did not log {text!r}:\n{self.log(name)[-4000:]}")

    def kill(self, name: str, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        process = self.processes[name]
        if process.poll() is None:
            os.killpg(process.pid, sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def stop(self) -> None:
        for name in list(self.processes):
            self.kill(name)


def test_database_url() -> str:
    db = django_settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


test_database_url.__test__ = False  # a helper, not a test


@pytest.fixture
def celery_stack(transactional_db, fake_telegram, broker, tmp_path):
    """Worker + Beat processes; Beat ticks dispatch_due every second."""
    from scheduling.periodic import register_periodic_tasks

    register_periodic_tasks()
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": django_settings.REDIS_URL,
        "TELEGRAM_API_BASE_URL": fake_telegram.base_url,
        "TELEGRAM_BOT_TOKEN": django_settings.TELEGRAM_BOT_TOKEN,
        "SCHEDULER_TICK_SECONDS": "1",
        "DELIVERY_RETRY_BASE_SECONDS": "0.5",
        "DATABASE_CONN_MAX_AGE": "0",
    }
    stack = CeleryStack(tmp_path, env)
    queues = ",".join(
        [
            django_settings.SCHEDULER_QUEUE,
            django_settings.INBOUND_QUEUE,
            *django_settings.DELIVERY_QUEUES.values(),
        ]
    )
    stack.start("worker", ["worker", "--queues", queues, "--concurrency", "2", "--loglevel",
                           "INFO", "--hostname", f"e2e-{os.getpid()}@%h", "--without-gossip",
                           "--without-mingle"])  # fmt: skip
    stack.beat_args = ["beat", "--loglevel", "INFO", "--pidfile=", "--max-interval", "1"]
    stack.start("beat", stack.beat_args)
    stack.wait_for_log("worker", "ready.")
    yield stack
    stack.stop()
