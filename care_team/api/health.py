"""Readiness of the moving parts, for operators' probes: the database, Redis, Beat (the
dispatcher's heartbeat) and the Celery workers.

Each check is a plain function that catches its own errors and returns a Check whose
detail names no host, URL or patient: an error class, an age, a count. `run_checks` runs
them side by side under one deadline, so a dependency that hangs makes the answer
"failing" within about 2.5 s instead of holding the probe.

A full run costs a second or more (the workers' ping waits its whole timeout) and the
endpoint needs no login, so `health_answer` keeps the report in the shared cache for
HEALTH_CACHE_SECONDS: one request at a time (holding a lock in Redis) runs the checks,
and every other request gets the last report, with its age.
"""

import logging
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from celery import current_app as celery_app
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connections
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from scheduling.heartbeat import seconds_since_last_tick

logger = logging.getLogger(__name__)

DEADLINE_SECONDS = 2.5
REDIS_TIMEOUT_SECONDS = 1.0
WORKER_PING_SECONDS = 1.0


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str


def beat_limit_seconds() -> float:
    """Beat ticks every SCHEDULER_TICK_SECONDS; three missed ticks and a restart's grace."""
    return 3 * settings.SCHEDULER_TICK_SECONDS + 30


def check_database() -> Check:
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return Check(True, "answered")
    except DatabaseError as exc:
        return Check(False, f"no answer ({type(exc).__name__})")
    finally:
        connections.close_all()  # this thread's own connections; the thread ends here


def check_redis() -> Check:
    client = redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
    )
    try:
        client.ping()
        return Check(True, "answered")
    except (RedisError, OSError) as exc:
        return Check(False, f"no answer ({type(exc).__name__})")
    finally:
        client.close()


def check_beat() -> Check:
    limit = beat_limit_seconds()
    try:
        age = seconds_since_last_tick()
    except (RedisError, OSError, ValueError) as exc:
        return Check(False, f"unknown: the heartbeat cannot be read ({type(exc).__name__})")
    if age is None:
        return Check(False, "no dispatcher tick recorded")
    return Check(age <= limit, f"last tick {age:.0f} s ago (limit {limit:.0f} s)")


def check_workers() -> Check:
    # Without a broker, Celery's client would retry its connection for many seconds.
    if not check_redis().ok:
        return Check(False, "not asked: the broker does not answer")
    try:
        replies = celery_app.control.ping(timeout=WORKER_PING_SECONDS) or []
    except (KombuError, RedisError, OSError) as exc:
        return Check(False, f"not asked ({type(exc).__name__})")
    if not replies:
        return Check(False, f"no worker answered within {WORKER_PING_SECONDS:.0f} s")
    return Check(True, f"{len(replies)} answering")


CHECKS = {
    "database": check_database,
    "redis": check_redis,
    "beat": check_beat,
    "workers": check_workers,
}


def run_checks(checks=None, *, deadline: float = DEADLINE_SECONDS) -> dict[str, Check]:
    """Every check at once; one still running at the deadline, or one that raised
    something unforeseen, counts as failing (it must never turn the probe into a 500)."""
    checks = CHECKS if checks is None else checks
    pool = ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="health")
    futures = {name: pool.submit(check) for name, check in checks.items()}
    done, _ = wait(futures.values(), timeout=deadline)
    pool.shutdown(wait=False, cancel_futures=True)  # a hung check finishes on its own
    results = {}
    for name, future in futures.items():
        if future not in done:
            results[name] = Check(False, f"no answer within {deadline:g} s")
        elif (error := future.exception()) is not None:
            logger.warning("health check %s raised %s", name, type(error).__name__)
            results[name] = Check(False, f"error ({type(error).__name__})")
        else:
            results[name] = future.result()
    return results


def health_report(checks: dict[str, Check]) -> dict:
    """The answer's body: "ok", or "failing" with the names of the failing parts."""
    failing = sorted(name for name, check in checks.items() if not check.ok)
    return {
        "status": "failing" if failing else "ok",
        "failing": failing,
        "checks": {name: {"ok": c.ok, "detail": c.detail} for name, c in checks.items()},
    }


REPORT_KEY = "health:report"
LOCK_KEY = "health:computing"
# The last report is kept this much longer than it is fresh, to answer with while one
# request computes the next.
STALE_KEEP_SECONDS = 60
POLL_SECONDS = 0.05


def health_answer() -> dict:
    """The report with `age_seconds` and `checked_at`: from the cache while it is younger
    than HEALTH_CACHE_SECONDS; otherwise computed by the one request that takes the lock,
    while the others answer with the last report (or, before there is any, wait for it)."""
    fresh_for = settings.HEALTH_CACHE_SECONDS
    if fresh_for <= 0:
        return _aged(_computed())
    try:
        cached = cache.get(REPORT_KEY)
        if cached is not None and time.time() - cached["checked_at"] < fresh_for:
            return _aged(cached)
        if cache.add(LOCK_KEY, 1, timeout=int(DEADLINE_SECONDS) + 2):
            try:
                cached = _computed()
                cache.set(REPORT_KEY, cached, timeout=fresh_for + STALE_KEEP_SECONDS)
            finally:
                cache.delete(LOCK_KEY)
            return _aged(cached)
        return _aged(cached if cached is not None else _awaited())
    except (RedisError, OSError) as exc:
        # The cache is Redis: without it, each request checks for itself (and the redis
        # check says what is wrong).
        logger.warning("health report not cached: %s", type(exc).__name__)
        return _aged(_computed())


def _computed() -> dict:
    return {"report": health_report(run_checks()), "checked_at": time.time()}


def _awaited() -> dict:
    """The report another request is computing; computed here if it never comes."""
    deadline = time.monotonic() + DEADLINE_SECONDS + 1
    while time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        if (cached := cache.get(REPORT_KEY)) is not None:
            return cached
    return _computed()


def _aged(cached: dict) -> dict:
    checked_at = cached["checked_at"]
    return {
        **cached["report"],
        "checked_at": datetime.fromtimestamp(checked_at, UTC).isoformat(timespec="seconds"),
        "age_seconds": round(max(time.time() - checked_at, 0.0), 1),
    }
