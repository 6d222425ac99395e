import os
import subprocess
import sys
from pathlib import Path

import pytest
from celery.app.defaults import NAMESPACES, flatten
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


def start_up(**env: str) -> subprocess.CompletedProcess:
    """Loads the settings in a fresh interpreter, as a process starting up would."""
    return subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; settings.INSTALLED_APPS"],
        cwd=ROOT, env={**os.environ, "DJANGO_SETTINGS_MODULE": "companion.settings", **env},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("SCHEDULER_TICK_SECONDS", "soon", "is not a whole number"),
        ("SCHEDULER_TICK_SECONDS", "0", "below its minimum"),
        ("DJANGO_DEBUG", "maybe", "is not a boolean"),
        ("DATABASE_URL", "sqlite:///db.sqlite3", "postgres://"),
        ("REDIS_URL", "localhost:6379", "redis://"),
        ("TELEGRAM_API_BASE_URL", "api.telegram.org", "http://"),
        ("LOG_LEVEL", "LOUD", "not a logging level"),
        ("DELIVERY_RETRY_BASE_SECONDS", "fast", "is not a number"),
        ("DELIVERY_RETRY_SCHEDULE_SECONDS", "5m,10m", "'5m' is not a number"),
        ("DELIVERY_RETRY_SCHEDULE_SECONDS", "300,0", "below its minimum"),
    ],
)
def test_a_wrong_value_stops_start_up_naming_the_variable(name, value, words):
    result = start_up(**{name: value})
    assert result.returncode != 0
    assert f"{name}=" in result.stderr
    assert words in result.stderr


def test_production_needs_a_secret_key_and_refuses_the_sandbox():
    no_key = start_up(DJANGO_DEBUG="false", DJANGO_SECRET_KEY="")
    assert "DJANGO_SECRET_KEY must be set" in no_key.stderr
    sandbox = start_up(DJANGO_DEBUG="false", CHANNEL_SANDBOX="true")
    assert "CHANNEL_SANDBOX=true is only allowed with DJANGO_DEBUG=true" in sandbox.stderr


def test_the_sandbox_is_on_by_default_only_in_debug_without_a_token():
    check = "from django.conf import settings; print(settings.CHANNEL_SANDBOX)"
    base = {**os.environ, "DJANGO_SETTINGS_MODULE": "companion.settings"}
    base.pop("CHANNEL_SANDBOX", None)

    def sandbox(**env):
        out = subprocess.run([sys.executable, "-c", check], cwd=ROOT, env={**base, **env},
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        return out.stdout.strip()

    assert sandbox(DJANGO_DEBUG="true", TELEGRAM_BOT_TOKEN="") == "True"
    assert sandbox(DJANGO_DEBUG="true", TELEGRAM_BOT_TOKEN="1:X") == "False"
    assert sandbox(DJANGO_DEBUG="false", TELEGRAM_BOT_TOKEN="") == "False"


def test_a_secret_can_come_from_a_file(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("42:FROM-FILE\n")
    check = "from django.conf import settings; print(settings.TELEGRAM_BOT_TOKEN)"
    out = subprocess.run(
        [sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "companion.settings",
             "TELEGRAM_BOT_TOKEN_FILE": str(secret)},
    )  # fmt: skip
    assert out.stdout.strip() == "42:FROM-FILE"


def test_every_celery_setting_is_one_celery_knows():
    # Celery ignores unknown names silently, so a typo would simply do nothing.
    known = {key for key, _ in flatten(NAMESPACES)}
    ours = [name for name in dir(settings) if name.startswith("CELERY_")]
    assert ours, "no CELERY_ settings found"
    # DB_REUSE_MAX is read by Celery's Django fixup by its full name, not a namespace key.
    unknown = [n for n in ours if n.removeprefix("CELERY_").lower() not in known
               and n != "CELERY_DB_REUSE_MAX"]  # fmt: skip
    assert unknown == []


def test_celery_reads_the_reliability_settings():
    from companion.celery import app

    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.broker_url == settings.REDIS_URL
    assert {q.name for q in app.conf.task_queues} == {
        settings.SCHEDULER_QUEUE,
        *settings.DELIVERY_QUEUES.values(),
        settings.OUTREACH_QUEUE,
        settings.INBOUND_QUEUE,
    }
