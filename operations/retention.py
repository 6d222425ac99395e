"""Data retention: old rows of each kind are deleted in small batches, so that no batch
holds locks on the busy tables (deliveries, attempts) for long and the dispatcher and the
senders keep their pace while it runs.

Each kind has its own setting in days (RETENTION_<KIND>_DAYS, 0 keeps it forever; the
processed inbound updates INBOUND_REPLAY_KEEP_DAYS, the window of the replay guard). A
batch is one short transaction over at most RETENTION_BATCH_SIZE rows picked through an
index; batches are RETENTION_PAUSE_SECONDS apart, and a run stops after
RETENTION_MAX_SECONDS (the next run goes on where it stopped: the oldest rows go first).

Deliveries go only once final (sent, failed, expired, cancelled), with their attempts
and the patient's acknowledgement of them. The dispatcher never looks back at them: it
creates the delivery of a message's next occurrence only, and moves past it in the same
transaction, so a deleted old delivery is never made again. One thing does read them:
a one-time message that has a delivery may no longer be edited (it is on its way), so
the delivery of a one-time message that is still active or paused is kept.
"""

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from auditlog.models import LogEntry
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from channels_app.models import InboxMessage, SandboxMessage
from operations.models import JobRun
from patients.models import InboundUpdate, InboxLink, LinkToken
from scheduling.models import (
    FINAL_DELIVERY_STATUSES,
    Acknowledgement,
    CareTeamAlert,
    Delivery,
    DeliveryAttempt,
    MessageStatus,
    ScheduledMessage,
)

logger = logging.getLogger(__name__)


@dataclass
class Report:
    """What a run deleted, per kind, and how long its longest batch took."""

    deleted: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    longest_batch_ms: float = 0.0
    batch_ms: list[float] = field(default_factory=list)
    stopped_early: bool = False

    def as_result(self) -> dict[str, int]:
        return {
            **self.deleted,
            "batches": self.batches,
            "longest_batch_ms": round(self.longest_batch_ms),
        }


@dataclass(frozen=True)
class Kind:
    name: str
    setting: str
    batches: Callable[[datetime, int], Iterator[Callable[[], int]]]


def clean_up_old_data(*, kinds: list[str] | None = None, now: datetime | None = None) -> Report:
    """Deletes what is past its retention, kind by kind, oldest first."""
    now = now or timezone.now()
    deadline = time.monotonic() + settings.RETENTION_MAX_SECONDS
    report = Report()
    for kind in KINDS:
        days = getattr(settings, kind.setting)
        if (kinds is not None and kind.name not in kinds) or not days:
            continue
        report.deleted[kind.name] = 0
        for batch in kind.batches(now - timedelta(days=days), settings.RETENTION_BATCH_SIZE):
            if time.monotonic() > deadline:
                report.stopped_early = True
                break
            began = time.perf_counter()
            with transaction.atomic():
                deleted = batch()
            _note_batch(report, kind.name, deleted, (time.perf_counter() - began) * 1000)
            time.sleep(settings.RETENTION_PAUSE_SECONDS)
        if report.stopped_early:
            break
    logger.info("retention: deleted %s in %d batches", report.deleted, report.batches)
    return report


def _note_batch(report: Report, kind: str, deleted: int, ms: float) -> None:
    report.deleted[kind] += deleted
    report.batches += 1
    report.batch_ms.append(ms)
    report.longest_batch_ms = max(report.longest_batch_ms, ms)


def _ids(sql: str, params: list) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def _delete(table: str, column: str, ids: list[int], extra: str = "", params=()) -> int:
    if not ids:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE {column} = ANY(%s){extra}", [ids, *params])  # noqa: S608
        return cursor.rowcount


# -- Deliveries ------------------------------------------------------------------------


def _delivery_batches(cutoff: datetime, size: int) -> Iterator[Callable[[], int]]:
    """Final deliveries whose occurrence is older than the cutoff, one status at a time
    along the (status, occurrence_at) index."""
    delivery, message = Delivery._meta.db_table, ScheduledMessage._meta.db_table
    kept_open = [MessageStatus.ACTIVE, MessageStatus.PAUSED]
    pick = (
        f"SELECT d.id FROM {delivery} d JOIN {message} m ON m.id = d.message_id "  # noqa: S608
        "WHERE d.status = %s AND d.occurrence_at < %s "
        "AND NOT (m.recurrence = '' AND m.status = ANY(%s)) LIMIT %s"
    )
    for status in sorted(FINAL_DELIVERY_STATUSES):
        while True:
            ids = _ids(pick, [status, cutoff, kept_open, size])
            if not ids:
                break
            yield lambda ids=ids, status=status: _delete_deliveries(ids, status)
            if len(ids) < size:
                break


def _delete_deliveries(ids: list[int], status: str) -> int:
    """The deliveries and what hangs on them, children first (Django's cascade would load
    every row into Python first)."""
    acks = Acknowledgement._meta.db_table
    ack_ids = _ids(f"SELECT id FROM {acks} WHERE delivery_id = ANY(%s)", [ids])  # noqa: S608
    _delete(CareTeamAlert._meta.db_table, "acknowledgement_id", ack_ids)
    _delete(acks, "delivery_id", ids)
    _delete(DeliveryAttempt._meta.db_table, "delivery_id", ids)
    # The status again: a manual retry may have brought one back since it was picked.
    return _delete(Delivery._meta.db_table, "id", ids, " AND status = %s", [status])


# -- Tables read oldest first along their primary key -----------------------------------


def _oldest_first(model, created: str, deletable: str) -> Callable:
    """Batches along the primary key, whose order is the rows' creation order: each batch
    reads the next `size` rows after the last one seen, deletes those created before the
    cutoff that are `deletable` (SQL), and the walk stops at the first newer row. Needs no
    index but the primary key."""
    table = model._meta.db_table

    def batches(cutoff: datetime, size: int) -> Iterator[Callable[[], int]]:
        last = 0
        pick = (
            f"SELECT id, {created} < %s, ({deletable}) FROM {table} "  # noqa: S608
            "WHERE id > %s ORDER BY id LIMIT %s"
        )
        while True:
            with connection.cursor() as cursor:
                cursor.execute(
                    pick.replace("%(cutoff)s", "%s"), _params(deletable, cutoff, last, size)
                )
                rows = cursor.fetchall()
            old = [(pk, gone) for pk, is_old, gone in rows if is_old]
            ids = [pk for pk, gone in old if gone]
            if ids:
                yield lambda ids=ids: _delete(table, "id", ids)
            if len(old) < len(rows) or len(rows) < size:
                break
            last = rows[-1][0]

    return batches


def _params(deletable: str, cutoff: datetime, last: int, size: int) -> list:
    # The deletable condition may name the cutoff once more.
    return [cutoff, *([cutoff] * deletable.count("%(cutoff)s")), last, size]


def _time_indexed(model, column: str) -> Callable:
    """Batches of the rows older than the cutoff by an indexed time column."""
    table = model._meta.db_table

    def batches(cutoff: datetime, size: int) -> Iterator[Callable[[], int]]:
        pick = f"SELECT id FROM {table} WHERE {column} < %s ORDER BY {column} LIMIT %s"  # noqa: S608
        while True:
            ids = _ids(pick, [cutoff, size])
            if not ids:
                break
            yield lambda ids=ids: _delete(table, "id", ids)
            if len(ids) < size:
                break

    return batches


def _link_batches(cutoff: datetime, size: int) -> Iterator[Callable[[], int]]:
    """Used or expired Telegram link tokens, and ended web-inbox links."""
    tokens = _oldest_first(LinkToken, "created_at", "coalesce(used_at, expires_at) < %(cutoff)s")
    links = _oldest_first(InboxLink, "created_at", "coalesce(revoked_at, expires_at) < %(cutoff)s")
    yield from tokens(cutoff, size)
    yield from links(cutoff, size)


KINDS = [
    Kind("deliveries", "RETENTION_SENT_DELIVERIES_DAYS", _delivery_batches),
    Kind(
        "inbox_messages",
        "RETENTION_INBOX_MESSAGES_DAYS",
        _oldest_first(InboxMessage, "created_at", "true"),
    ),
    Kind(
        "sandbox_messages",
        "RETENTION_SANDBOX_DAYS",
        _oldest_first(SandboxMessage, "created_at", "true"),
    ),
    Kind("link_tokens", "RETENTION_LINK_TOKENS_DAYS", _link_batches),
    # The inbound sweep deletes these too, every minute; here they go in batches after the
    # sweep was off, or the setting lowered. Its window is the replay guard's.
    Kind(
        "inbound_updates",
        "INBOUND_REPLAY_KEEP_DAYS",
        _oldest_first(InboundUpdate, "received_at", "processed_at < %(cutoff)s"),
    ),
    Kind("audit_entries", "RETENTION_AUDIT_DAYS", _time_indexed(LogEntry, "timestamp")),
    Kind("job_history", "RETENTION_JOB_HISTORY_DAYS", _time_indexed(JobRun, "started_at")),
]
KIND_NAMES = [kind.name for kind in KINDS]
