"""What each run of a system job did: when, how long, ok or failed, a short result and
the error, one JobRun row a run (operations.signals feeds it from Celery's signals, so
the jobs' own tasks do not change).

A job that runs more often than once a minute (the dispatcher every second, the reaper
every few seconds) is summed up instead: each run adds to its minute's bucket in Redis,
and the first run after the minute writes one row for it (runs, failures, the summed
counts, the longest run). The history then grows by at most 1,440 rows a day per job,
and a minute without a row is a minute in which the job did not run at all.

Results are the jobs' counts, never patient data. Recording never fails a job: an error
while recording is logged and dropped.
"""

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from numbers import Number

from celery.exceptions import Retry
from django.db import connection
from django.utils import timezone

from channels_app.shared_state import redis_client, run_script
from operations.models import JobOutcome, JobRun
from operations.models.jobs import ERROR_MAX, RESULT_MAX
from scheduling.periodic import system_periodic_tasks

logger = logging.getLogger(__name__)

SUMMARY_BELOW_SECONDS = 60  # jobs running more often are recorded once a minute
OWN_TASKS_PREFIX = "operations."  # every task of this app is a system job
# What a job's plain number result counts, for its history.
COUNT_NAMES = {"scheduling.dispatch_due": "claimed", "scheduling.mark_missed_doses": "missed"}
PENDING_KEY = "operations:job-minutes"
BUCKET_TTL_SECONDS = 86_400
ADD_TO_MINUTE = """
local key = KEYS[1]
redis.call('HINCRBY', key, 'runs', 1)
redis.call('HINCRBY', key, 'failures', ARGV[2])
redis.call('HINCRBY', key, 'ms_total', ARGV[1])
if tonumber(ARGV[1]) > tonumber(redis.call('HGET', key, 'ms_max') or '0') then
  redis.call('HSET', key, 'ms_max', ARGV[1])
end
if ARGV[3] ~= '' then redis.call('HSET', key, 'error', ARGV[3]) end
for i = 5, #ARGV, 2 do redis.call('HINCRBY', key, 'n:' .. ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', key, tonumber(ARGV[4]))
redis.call('SADD', KEYS[2], key)
"""

_started: dict[str, tuple[float, datetime]] = {}  # task id -> (monotonic, wall) start
_labels: dict[str, str] = {}  # task id -> the name its run is recorded under


@dataclass(frozen=True)
class Finished:
    task_name: str
    task_id: str
    state: str  # Celery's: SUCCESS, FAILURE, RETRY, ...
    retval: object


def intervals() -> dict[str, int]:
    """The periodic system jobs (scheduling.periodic) and their intervals in seconds."""
    return {task: seconds for _, task, seconds in system_periodic_tasks()}


def is_recorded(task_name: str) -> bool:
    return task_name.startswith(OWN_TASKS_PREFIX) or task_name in intervals()


def label_run(task_id: str, name: str) -> None:
    """Records the running task under `name` (a custom job under its job type)."""
    _labels[task_id] = name


def run_started(task_id: str, *, at: datetime | None = None) -> None:
    _started[task_id] = (time.monotonic(), at or timezone.now())


def run_finished(finished: Finished) -> JobRun | None:
    """Records a run that run_started saw begin; None when summed up or not recorded."""
    began = _started.pop(finished.task_id, None)
    name = _labels.pop(finished.task_id, finished.task_name)
    outcome = _outcome(finished.state)
    if began is None or outcome is None:
        return None
    duration_ms = round((time.monotonic() - began[0]) * 1000)
    error = _error_text(finished.retval) if outcome != JobOutcome.OK else ""
    counts = _counts(finished.task_name, finished.retval) if outcome == JobOutcome.OK else {}
    if intervals().get(finished.task_name, SUMMARY_BELOW_SECONDS) < SUMMARY_BELOW_SECONDS:
        _add_to_minute(name, began[1], duration_ms, error, counts)
        write_past_minutes(now=began[1])
        return None
    return JobRun.objects.create(
        job=name,
        task_id=finished.task_id[:64],
        started_at=began[1],
        finished_at=began[1] + timedelta(milliseconds=duration_ms),
        duration_ms=duration_ms,
        outcome=outcome,
        result=_result_text(finished.retval, counts),
        error=error,
    )


def _outcome(state: str) -> str | None:
    return {
        "SUCCESS": JobOutcome.OK,
        "FAILURE": JobOutcome.FAILED,
        "RETRY": JobOutcome.RETRYING,
        "REJECTED": JobOutcome.FAILED,
    }.get(state)


def _error_text(retval: object) -> str:
    # A Retry carries the error that caused it.
    error = getattr(retval, "exc", None) or retval
    if not isinstance(error, BaseException):
        return str(error)[:ERROR_MAX]
    return f"{type(error).__name__}: {error}"[:ERROR_MAX]


def _counts(task_name: str, retval: object) -> dict[str, int]:
    """The numbers a job returned, by name: a dict's numeric values, or a plain number."""
    if isinstance(retval, bool):
        return {}
    if isinstance(retval, int):
        return {COUNT_NAMES.get(task_name, "count"): retval}
    if isinstance(retval, dict):
        return {str(k): int(v) for k, v in retval.items() if isinstance(v, Number)}
    return {}


def _result_text(retval: object, counts: dict[str, int]) -> str:
    if isinstance(retval, Retry):
        return f"retry {retval.humanize()}"
    if isinstance(retval, BaseException):
        return ""
    if counts:
        return ", ".join(f"{k}={v}" for k, v in counts.items())[:RESULT_MAX]
    return "" if retval is None else str(retval)[:RESULT_MAX]


def _minute(moment: datetime) -> int:
    return int(moment.timestamp()) // 60 * 60


def _add_to_minute(name: str, started: datetime, ms: int, error: str, counts: dict) -> None:
    key = f"operations:job-minute:{_minute(started)}:{name}"
    pairs = [str(part) for item in counts.items() for part in item]
    run_script(
        ADD_TO_MINUTE, [key, PENDING_KEY], [ms, int(bool(error)), error, BUCKET_TTL_SECONDS, *pairs]
    )


def write_past_minutes(*, now: datetime | None = None) -> list[JobRun]:
    """One row for each minute bucket that is over. Several workers may call it at once:
    SREM hands each bucket to one of them."""
    client = redis_client()
    current = _minute(now or timezone.now())
    written = []
    for raw in client.smembers(PENDING_KEY):
        key = raw.decode()
        _, _, minute, name = key.split(":", 3)
        if int(minute) >= current or not client.srem(PENDING_KEY, key):
            continue
        fields = {k.decode(): v.decode() for k, v in client.hgetall(key).items()}
        client.delete(key)
        if fields:
            written.append(_minute_row(name, int(minute), fields))
    return written


def _minute_row(name: str, minute: int, fields: dict[str, str]) -> JobRun:
    runs, failures = int(fields["runs"]), int(fields.get("failures", 0))
    counts = {k[2:]: v for k, v in sorted(fields.items()) if k.startswith("n:")}
    parts = [
        f"{runs} runs",
        f"{failures} failed",
        *(f"{k}={v}" for k, v in counts.items()),
        f"mean {int(fields['ms_total']) // runs} ms",
    ]
    started = datetime.fromtimestamp(minute, tz=UTC)
    return JobRun.objects.create(
        job=name,
        started_at=started,
        finished_at=started + timedelta(seconds=60),
        duration_ms=int(fields.get("ms_max", 0)),
        runs=runs,
        outcome=JobOutcome.FAILED if failures else JobOutcome.OK,
        result=", ".join(parts)[:RESULT_MAX],
        error=fields.get("error", "")[:ERROR_MAX],
    )


def latest_runs() -> list[JobRun]:
    """Each job's latest run (the control panel's table), newest first. The job names are
    found by a skip scan of job_run_latest_idx (a recursive query reading one index entry
    per job), so the page costs the same with a month of history as with a day."""
    table = JobRun._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH RECURSIVE jobs AS ((SELECT job FROM {table} ORDER BY job LIMIT 1) "  # noqa: S608
            f"UNION ALL SELECT (SELECT job FROM {table} WHERE job > jobs.job ORDER BY job "
            "LIMIT 1) FROM jobs WHERE jobs.job IS NOT NULL) "
            "SELECT job FROM jobs WHERE job IS NOT NULL"
        )
        names = [row[0] for row in cursor.fetchall()]
    latest = [JobRun.objects.filter(job=name).order_by("-started_at").first() for name in names]
    return sorted(filter(None, latest), key=lambda run: run.started_at, reverse=True)
