"""/api/scheduler/health/ runs its checks (a second or more: the workers' ping waits for
its timeout) at most once per HEALTH_CACHE_SECONDS, one request at a time; the others get
the last report and its age (docs/security.md, 12)."""

import threading
import time

import pytest

from care_team.api import health
from care_team.api.health import Check, health_answer

URL = "/api/scheduler/health/"


@pytest.fixture
def counted_checks(monkeypatch):
    """The real checks, each counting its runs."""
    runs = {name: 0 for name in health.CHECKS}

    def counting(name, check):
        def run() -> Check:
            runs[name] += 1
            return check()

        return run

    for name, check in list(health.CHECKS.items()):
        monkeypatch.setitem(health.CHECKS, name, counting(name, check))
    return runs


def test_a_second_call_right_after_the_first_pings_no_worker_and_says_its_age(
    db, client, counted_checks
):
    started = time.monotonic()
    first = client.get(URL)
    first_took = time.monotonic() - started  # no worker here: the ping waits its second
    time.sleep(0.2)
    started = time.monotonic()
    second = client.get(URL)
    second_took = time.monotonic() - started

    assert counted_checks["workers"] == 1 and counted_checks["database"] == 1
    assert first_took >= health.WORKER_PING_SECONDS and second_took < 0.2
    assert second.status_code == first.status_code == 503  # no worker, no Beat
    assert first.json()["age_seconds"] < 0.2 <= second.json()["age_seconds"]
    assert second.json()["checked_at"] == first.json()["checked_at"]
    assert second.json()["checks"] == first.json()["checks"]


def test_the_checks_run_again_once_the_report_is_older_than_the_setting(
    db, client, counted_checks, settings
):
    settings.HEALTH_CACHE_SECONDS = 1
    client.get(URL)
    time.sleep(1.05)
    assert client.get(URL).json()["age_seconds"] < 0.5
    assert counted_checks["workers"] == 2


def test_only_one_of_many_requests_at_once_runs_the_checks(db, monkeypatch):
    runs = []

    def slow() -> Check:
        runs.append(1)
        time.sleep(0.3)
        return Check(True, "answered")

    monkeypatch.setattr(health, "CHECKS", {"slow": slow})
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(health_answer())) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(runs) == 1
    assert len(answers) == 6 and {a["status"] for a in answers} == {"ok"}
    assert len({a["checked_at"] for a in answers}) == 1


def test_zero_seconds_runs_the_checks_on_every_request(db, client, counted_checks, settings):
    settings.HEALTH_CACHE_SECONDS = 0
    client.get(URL)
    client.get(URL)
    assert counted_checks["workers"] == 2
