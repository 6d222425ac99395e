"""The files a worker keeps for Kubernetes' probes (companion/worker_probes.py), written
by a real `celery worker` process."""

import os
import time

import pytest
from django.conf import settings as django_settings

from tests.conftest import CeleryStack, test_database_url


def wait_until(condition, timeout: float = 60):
    """Waits for a condition: a bound on how long a test hangs, not an assertion on speed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    raise AssertionError(f"still not true after {timeout} s")


@pytest.fixture
def worker_env(transactional_db, broker):
    return {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": django_settings.REDIS_URL,
    }


def start_worker(stack: CeleryStack) -> None:
    queue = django_settings.SCHEDULER_QUEUE
    node = f"probes-{os.getpid()}@%h"
    options = ["--concurrency", "1", "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
    stack.start("worker", ["worker", "--queues", queue, "--hostname", node, *options])


def test_a_worker_refreshes_its_heartbeat_file_and_marks_itself_ready(worker_env, tmp_path):
    heartbeat, ready = tmp_path / "heartbeat", tmp_path / "ready"
    ready.touch()  # left by a container that ran before in the same pod
    files = {"WORKER_HEARTBEAT_FILE": str(heartbeat), "WORKER_READY_FILE": str(ready)}
    stack = CeleryStack(tmp_path, {**worker_env, **files, "WORKER_HEARTBEAT_SECONDS": "1"})
    stale_ready = ready.stat().st_mtime_ns
    try:
        start_worker(stack)
        stack.wait_for_log("worker", "ready.")
        wait_until(lambda: ready.exists() and ready.stat().st_mtime_ns != stale_ready)
        first = heartbeat.stat().st_mtime_ns
        # Touched again by the worker's timer, not only once at start.
        wait_until(lambda: heartbeat.stat().st_mtime_ns > first)

        stack.kill("worker")  # SIGTERM: the warm shutdown

        assert stack.processes["worker"].returncode == 0, stack.log("worker")[-2000:]
        assert not ready.exists()
        assert not heartbeat.exists()
    finally:
        stack.stop()


def test_beat_touches_its_heartbeat_file_after_each_tick(worker_env, tmp_path):
    heartbeat = tmp_path / "beat-heartbeat"
    heartbeat.touch()
    os.utime(heartbeat, (0, 0))  # left by a container that ran before in the same pod
    stack = CeleryStack(tmp_path, {**worker_env, "BEAT_HEARTBEAT_FILE": str(heartbeat)})
    try:
        stack.start("beat", ["beat", "--loglevel", "INFO", "--pidfile="])
        wait_until(lambda: heartbeat.exists() and heartbeat.stat().st_mtime > 0)
        first = heartbeat.stat().st_mtime_ns
        # Touched again by the next tick, not only once at start.
        wait_until(lambda: heartbeat.stat().st_mtime_ns > first)
        assert stack.processes["beat"].poll() is None, stack.log("beat")[-2000:]
    finally:
        stack.stop()
