"""The alert rules: each a plain function that measures one thing and says whether it fires.

A rule returns one Measurement per thing it watches (a channel, an organization, a queue),
keyed "<rule>:<what>", e.g. "failure_rate:telegram" or "failure_rate:org:12". The
evaluator (operations/alerting.py) opens an incident for a key that fires and resolves it
when the key no longer does. Thresholds come from the ALERT_* settings. Summaries name
channels, queues and organization ids with counts and rates: never a patient.

Every measurement is cheap enough to run once a minute:
- failure rates: one grouped read of the attempts finished in the window (ALERT_WINDOW_
  MINUTES), per channel and per organization;
- breakers: the breakers' hashes in Redis (`opened_at` is set when one opens from closed
  and kept while it reopens after failed probes, so it dates the whole outage);
- Beat: the dispatcher's heartbeat in Redis (scheduling/heartbeat.py);
- backlog: each channel's queued and held deliveries, sampled at every evaluation into a
  Redis sorted set (see BacklogSamples for why Redis);
- lateness: one percentile read over the deliveries due in the window;
- workers: one broadcast asking each worker which queues it consumes (it waits its whole
  1 s timeout, in a scheduler worker's process, once an evaluation).
"""

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery import current_app as celery_app
from django.conf import settings
from django.db import connection
from django.db.models import Count, Q
from django.utils import timezone

from channels_app.breaker import breaker_states
from channels_app.shared_state import redis_client
from operations.models import Severity
from scheduling.channel_status import channel_statuses
from scheduling.heartbeat import seconds_since_last_tick
from scheduling.models import AttemptOutcome, Delivery, DeliveryAttempt, DeliveryStatus

logger = logging.getLogger(__name__)

# A send the provider did not take. A patient who blocked the bot (403) is their choice,
# not trouble; an attempt still in progress has no outcome yet.
FAILED_OUTCOMES = (AttemptOutcome.TRANSIENT, AttemptOutcome.PERMANENT)
FINISHED_OUTCOMES = (*FAILED_OUTCOMES, AttemptOutcome.SENT, AttemptOutcome.BLOCKED)
WORKER_PING_SECONDS = 1.0
NO_TICK_KEY = "alerts:no_tick_since"


@dataclass(frozen=True)
class Measurement:
    key: str
    severity: str
    value: float | None
    threshold: float | None
    firing: bool
    summary: str
    # Whether an incident already open stays open, when that differs from `firing`: a
    # rate needs enough sends to open an incident, but a window that has too few to say
    # must not resolve it, or traffic hovering about the minimum would open and resolve
    # it at every evaluation.
    holds: bool | None = None

    @property
    def keeps_open(self) -> bool:
        return self.firing if self.holds is None else self.holds


# --- failure rate ------------------------------------------------------------------------


def failure_rate_fires(total: int, failed: int) -> bool:
    """More than ALERT_FAILURE_RATE of at least ALERT_FAILURE_MIN_DELIVERIES sends failed."""
    return total >= settings.ALERT_FAILURE_MIN_DELIVERIES and (
        failed / total > settings.ALERT_FAILURE_RATE
    )


def failure_rates(now: datetime | None = None) -> list[Measurement]:
    """Per channel (every channel, so one gone quiet resolves) and per organization that
    sent in the window. A send is one try at the provider: a delivery that failed twice
    and then went out counts three sends, two of them failed."""
    since = (now or timezone.now()) - timedelta(minutes=settings.ALERT_WINDOW_MINUTES)
    attempts = DeliveryAttempt.objects.filter(finished_at__gte=since, outcome__in=FINISHED_OUTCOMES)
    counts = {"total": Count("pk"), "failed": Count("pk", filter=Q(outcome__in=FAILED_OUTCOMES))}
    by_channel = {
        row["delivery__channel"]: row
        for row in attempts.values("delivery__channel").annotate(**counts)
    }
    measurements = []
    for channel in settings.CHANNELS:
        row = by_channel.get(channel, {"total": 0, "failed": 0})
        measurements.append(_failure_measurement(f"failure_rate:{channel}", channel, row))
    for row in attempts.values("delivery__message__organization_id").annotate(**counts):
        org = row["delivery__message__organization_id"]
        measurements.append(_failure_measurement(f"failure_rate:org:{org}", f"org {org}", row))
    return measurements


def _failure_measurement(key: str, what: str, row: dict) -> Measurement:
    total, failed = row["total"], row["failed"]
    rate = failed / total if total else 0.0
    window = settings.ALERT_WINDOW_MINUTES
    return Measurement(
        key=key,
        severity=Severity.WARNING,
        value=round(rate, 4),
        threshold=settings.ALERT_FAILURE_RATE,
        firing=failure_rate_fires(total, failed),
        holds=rate > settings.ALERT_FAILURE_RATE,
        summary=(
            f"{what}: {failed} of {total} sends failed in the last {window:g} min "
            f"({rate:.0%}; alert above {settings.ALERT_FAILURE_RATE:.0%} of at least "
            f"{settings.ALERT_FAILURE_MIN_DELIVERIES})"
        ),
    )


# --- breakers ----------------------------------------------------------------------------


def breakers_open(now: float | None = None) -> list[Measurement]:
    """A breaker that has not closed since it opened, for ALERT_BREAKER_OPEN_MINUTES."""
    now_ms = int((now if now is not None else time.time()) * 1000)
    limit = settings.ALERT_BREAKER_OPEN_MINUTES
    measurements = []
    for channel, fields in breaker_states(settings.CHANNELS).items():
        state = fields.get("state", "closed")
        opened_at = int(fields.get("opened_at") or now_ms)
        minutes = (now_ms - opened_at) / 60_000 if state != "closed" else 0.0
        measurements.append(
            Measurement(
                key=f"breaker_open:{channel}",
                severity=Severity.CRITICAL,
                value=round(minutes, 1),
                threshold=limit,
                firing=state != "closed" and minutes >= limit,
                summary=(
                    f"{channel}: circuit breaker {state} for {minutes:.0f} min "
                    f"(alert at {limit:g} min); deliveries wait"
                ),
            )
        )
    return measurements


# --- Beat --------------------------------------------------------------------------------


def beat_stale(now: float | None = None) -> list[Measurement]:
    """No tick for ALERT_BEAT_STALE_SECONDS. With no tick recorded at all (a first start,
    or Redis restarted empty) the age counts from when this rule first saw none, so a
    stack that has just started, or a Redis restart, raises nothing."""
    now = now if now is not None else time.time()
    limit = settings.ALERT_BEAT_STALE_SECONDS
    age = seconds_since_last_tick()
    client = redis_client()
    if age is None:
        client.set(NO_TICK_KEY, repr(now), nx=True, ex=7 * 24 * 3600)
        age = max(now - float(client.get(NO_TICK_KEY) or now), 0.0)
        summary = f"no dispatcher tick recorded for {age:.0f} s (alert after {limit} s)"
    else:
        client.delete(NO_TICK_KEY)
        summary = f"the dispatcher last ticked {age:.0f} s ago (alert after {limit} s)"
    return [
        Measurement(
            key="beat_stale",
            severity=Severity.CRITICAL,
            value=round(age, 1),
            threshold=limit,
            firing=age > limit,
            summary=f"{summary}: Beat or the scheduler's workers are down",
        )
    ]


# --- backlog -----------------------------------------------------------------------------


class BacklogSamples:
    """Each channel's backlog at each evaluation, kept in a Redis sorted set (score: the
    time) for the growing period and a margin. Redis rather than a table: a sample a
    minute per channel is written and thrown away all day, which in PostgreSQL would be
    rows to insert, delete and vacuum for nothing; losing them with Redis only restarts
    the count (the alert comes ALERT_BACKLOG_GROWING_MINUTES later)."""

    PREFIX = "alerts:backlog:"

    def __init__(self, channel: str) -> None:
        self.key = f"{self.PREFIX}{channel}"

    def add(self, backlog: int, at: float) -> None:
        keep_seconds = settings.ALERT_BACKLOG_GROWING_MINUTES * 60 + 3 * max(
            settings.ALERT_EVALUATION_SECONDS, 60
        )
        pipe = redis_client().pipeline()
        pipe.zadd(self.key, {f"{at:.3f}:{backlog}": at})
        pipe.zremrangebyscore(self.key, "-inf", at - keep_seconds)
        pipe.expire(self.key, int(keep_seconds) + 60)
        pipe.execute()

    def since(self, start: float) -> list[tuple[float, int]]:
        """(time, backlog) from the last sample at or before `start` on, oldest first."""
        client = redis_client()
        before = client.zrevrangebyscore(self.key, start, "-inf", start=0, num=1)
        after = client.zrangebyscore(self.key, f"({start}", "+inf")
        samples = []
        for raw in [*before, *after]:
            at, _, backlog = raw.decode().partition(":")
            samples.append((float(at), int(backlog)))
        return samples


def backlog_grew_throughout(samples: list[tuple[float, int]], start: float) -> bool:
    """The samples cover the whole period (the first at or before its start), the backlog
    never fell from one to the next, and it ends higher than it began."""
    if len(samples) < 2 or samples[0][0] > start:
        return False
    backlogs = [backlog for _, backlog in samples]
    return all(b >= a for a, b in zip(backlogs, backlogs[1:], strict=False)) and (
        backlogs[-1] > backlogs[0]
    )


def backlog_growing(now: float | None = None) -> list[Measurement]:
    """Records this evaluation's sample, then looks back ALERT_BACKLOG_GROWING_MINUTES."""
    now = now if now is not None else time.time()
    minutes = settings.ALERT_BACKLOG_GROWING_MINUTES
    start = now - minutes * 60
    measurements = []
    for status in channel_statuses():
        samples = BacklogSamples(status.channel)
        samples.add(status.queued, now)
        history = samples.since(start)
        firing = backlog_grew_throughout(history, start)
        before = history[0][1] if history else status.queued
        measurements.append(
            Measurement(
                key=f"backlog_growing:{status.channel}",
                severity=Severity.WARNING,
                value=status.queued,
                threshold=before,
                firing=firing,
                summary=(
                    f"{status.channel}: {status.queued} deliveries waiting ({status.held} "
                    f"held), up from {before} {minutes:g} min ago without falling"
                ),
            )
        )
    return measurements


# --- lateness ----------------------------------------------------------------------------

_LATENESS_SQL = """
SELECT channel, count(*),
       percentile_cont(0.95) WITHIN GROUP (
           ORDER BY extract(epoch FROM coalesce(sent_at, %(now)s) - occurrence_at))
FROM {table}
WHERE status = ANY(%(statuses)s) AND occurrence_at >= %(since)s AND occurrence_at <= %(now)s
GROUP BY channel
"""


def lateness_p95(now: datetime | None = None) -> list[Measurement]:
    """How late the deliveries due in the window went out: sent_at minus the moment they
    were due, and for those still waiting, how late they are already (a backlog that
    never goes out must count). At least ALERT_FAILURE_MIN_DELIVERIES of them: the 95th
    percentile of a handful is only the slowest one, a single retry's backoff."""
    now = now or timezone.now()
    since = now - timedelta(minutes=settings.ALERT_WINDOW_MINUTES)
    statuses = (DeliveryStatus.SENT, DeliveryStatus.QUEUED, DeliveryStatus.SENDING)
    with connection.cursor() as cursor:
        cursor.execute(
            _LATENESS_SQL.format(table=Delivery._meta.db_table),
            {"now": now, "since": since, "statuses": [str(s) for s in statuses]},
        )
        rows = {channel: (count, p95) for channel, count, p95 in cursor.fetchall()}
    limit = settings.ALERT_LATENESS_P95_SECONDS
    measurements = []
    for channel in settings.CHANNELS:
        count, p95 = rows.get(channel, (0, None))
        p95 = max(float(p95 or 0.0), 0.0)
        measurements.append(
            Measurement(
                key=f"lateness:{channel}",
                severity=Severity.WARNING,
                value=round(p95, 1),
                threshold=limit,
                firing=count >= settings.ALERT_FAILURE_MIN_DELIVERIES and p95 > limit,
                holds=count > 0 and p95 > limit,
                summary=(
                    f"{channel}: 95% of {count} deliveries due in the last "
                    f"{settings.ALERT_WINDOW_MINUTES:g} min went out within {p95:.0f} s "
                    f"(alert above {limit:g} s)"
                ),
            )
        )
    return measurements


# --- workers -----------------------------------------------------------------------------


def queues_without_worker(required: list[str], replies: dict[str, list[dict]] | None) -> set:
    """The required queues no answering worker consumes. `replies` is Celery's
    active_queues answer: {worker: [{"name": queue, ...}, ...]}."""
    served = {queue["name"] for queues in (replies or {}).values() for queue in queues}
    return set(required) - served


def worker_pools(now: float | None = None) -> list[Measurement]:
    """A queue of ALERT_WORKER_QUEUES that no answering worker has consumed for
    ALERT_NO_WORKER_SECONDS: since when is kept in Redis per queue, so a worker's restart
    (a deploy), which leaves its queues unserved for seconds, raises nothing."""
    now = now if now is not None else time.time()
    replies = celery_app.control.inspect(timeout=WORKER_PING_SECONDS).active_queues()
    empty = queues_without_worker(settings.ALERT_WORKER_QUEUES, replies)
    client = redis_client()
    grace = settings.ALERT_NO_WORKER_SECONDS
    measurements = []
    for queue in settings.ALERT_WORKER_QUEUES:
        key = f"alerts:unserved_since:{queue}"
        if queue not in empty:
            client.delete(key)
            unserved = 0.0
        else:
            client.set(key, repr(now), nx=True, ex=7 * 24 * 3600)
            unserved = max(now - float(client.get(key) or now), 0.0)
        measurements.append(
            Measurement(
                key=f"no_worker:{queue}",
                severity=Severity.CRITICAL,
                value=round(unserved),
                threshold=grace,
                firing=queue in empty and unserved >= grace,
                summary=(
                    f"queue {queue}: no worker has consumed it for {unserved:.0f} s (alert "
                    f"after {grace} s; {len(replies or {})} workers answered)"
                ),
            )
        )
    return measurements


# Each family's key prefix, and the function that measures it.
RULES = {
    "failure_rate": failure_rates,
    "breaker_open": breakers_open,
    "beat_stale": beat_stale,
    "backlog_growing": backlog_growing,
    "lateness": lateness_p95,
    "no_worker": worker_pools,
}
