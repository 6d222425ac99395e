import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import test_database_url

ROOT = Path(__file__).resolve().parent.parent


def check_services(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check_services"], cwd=ROOT,
        env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_it_names_the_redis_url_that_failed_and_how_to_start_redis():
    result = check_services(REDIS_URL="redis://127.0.0.1:9/0")
    assert result.returncode != 0
    assert "Redis is not reachable at redis://127.0.0.1:9/0" in result.stderr
    assert "redis-server" in result.stderr


def test_it_names_the_database_url_without_its_password_and_does_not_hang():
    started = time.monotonic()
    result = check_services(DATABASE_URL="postgres://app:hunter2@127.0.0.1:9/companion")
    assert time.monotonic() - started < 30
    assert result.returncode != 0
    assert "PostgreSQL is not reachable at postgres://app:***@127.0.0.1:9/companion" in (
        result.stderr
    )
    assert "hunter2" not in result.stderr
    assert "pg_ctlcluster" in result.stderr


def test_it_passes_when_both_answer(db):
    result = check_services(DATABASE_URL=test_database_url())
    assert result.returncode == 0, result.stderr
    assert "PostgreSQL and Redis answer" in result.stdout
