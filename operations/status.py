"""The scheduler's status for operators, in sections: the health checks, Beat's last
tick, the workers answering, each channel's queue depth, breaker and held backlog, the
database's view of sending (operations/delivery_activity.py), open incidents and the
latest runs of the system's jobs.

The health checks live with the health endpoint (care_team/api/health.py, a surface
above this layer), so the surface runs them, cached, and hands their report in: the
page and the API then cost one health run per HEALTH_CACHE_SECONDS however often they
are read. Every other section is a few indexed reads and one Redis round trip per
channel; a section whose source does not answer says so instead of failing the rest.
"""

import logging
from dataclasses import asdict

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from redis.exceptions import RedisError

from operations.delivery_activity import delivery_activity
from operations.job_history import latest_runs
from operations.models import Incident
from scheduling.channel_status import channel_statuses
from scheduling.heartbeat import seconds_since_last_tick

logger = logging.getLogger(__name__)


def scheduler_status(*, health: dict) -> dict:
    """Every section; `health` is the health endpoint's report (with its age)."""
    now = timezone.now()
    checks = health.get("checks", {})
    return {
        "generated_at": now.isoformat(timespec="seconds"),
        "health": health,
        "beat": beat_section(),
        "workers": checks.get("workers", {"ok": False, "detail": "not checked"}),
        "channels": _guarded("channels", channels_section),
        "database_activity": _guarded("database_activity", lambda: delivery_activity(now=now)),
        "open_incidents": _guarded_list("open_incidents", open_incidents),
        "recent_job_runs": _guarded_list("recent_job_runs", recent_job_runs),
    }


def beat_section() -> dict:
    # The same limit as the health check's: three missed ticks and a restart's grace.
    limit = 3 * settings.SCHEDULER_TICK_SECONDS + 30
    try:
        age = seconds_since_last_tick()
    except (RedisError, OSError, ValueError) as exc:
        return {
            "ok": False,
            "last_tick_age_seconds": None,
            "limit_seconds": limit,
            "detail": f"the heartbeat cannot be read ({type(exc).__name__})",
        }
    return {
        "ok": age is not None and age <= limit,
        "last_tick_age_seconds": None if age is None else round(age, 1),
        "limit_seconds": limit,
        "detail": "no dispatcher tick recorded" if age is None else f"last tick {age:.0f} s ago",
    }


def channels_section() -> dict:
    rows = []
    for status in channel_statuses():
        row = asdict(status)
        row["open_until"] = status.open_until.isoformat() if status.open_until else None
        rows.append(row)
    return {
        "channels": rows,
        "held_total": sum(row["held"] for row in rows),
        "queued_total": sum(row["queued"] for row in rows),
        "open_breakers": [row["channel"] for row in rows if row["breaker"] != "closed"],
    }


def open_incidents() -> list[dict]:
    """The incidents the alert rules hold open (operations/alerting.py), newest first; at
    most one per rule, so the list is short by construction."""
    incidents = Incident.objects.filter(resolved_at__isnull=True).order_by("-opened_at")
    return [
        {
            "rule_key": incident.rule_key,
            "severity": incident.severity,
            "summary": incident.summary,
            "value": incident.value,
            "threshold": incident.threshold,
            "opened_at": incident.opened_at.isoformat(timespec="seconds"),
            "last_firing_at": incident.last_firing_at.isoformat(timespec="seconds"),
        }
        for incident in incidents[:50]
    ]


def recent_job_runs() -> list[dict]:
    """Each system job's latest run (operations/job_history.py), newest first."""
    return [
        {
            "job": run.job,
            "started_at": run.started_at.isoformat(timespec="seconds"),
            "outcome": run.outcome,
            "duration_ms": run.duration_ms,
            "runs": run.runs,
            "result": run.result,
            "error": run.error,
        }
        for run in latest_runs()
    ]


def _guarded_list(name: str, section) -> list[dict]:
    """The same for a list section: one row that names the error."""
    answer = _guarded(name, section)
    return [answer] if isinstance(answer, dict) else answer


def _guarded(name: str, section):
    """A section whose source is down reports the error class; the others still show."""
    try:
        return section()
    except (DatabaseError, RedisError, OSError) as exc:
        logger.warning("status section %s unavailable: %s", name, type(exc).__name__)
        return {"error": f"unavailable ({type(exc).__name__})"}
