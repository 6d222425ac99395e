"""One evaluation of the alert rules: measure, open or resolve incidents, send notices.

An operator hears of an incident twice: one notice to each target when it opens, none
while it lasts, one when it resolves. That holds with any number of evaluations running
at once (Beat's task and `manage.py evaluate_alerts` from cron, say):
- open: the partial unique constraint allows one open incident per rule key; a second
  evaluation that tries to open it waits for the first one's commit and then fails to
  insert, and so creates no notices;
- resolve: the open incident's row is locked and re-read, so the second evaluation finds
  it already resolved. An incident resolves when its rule no longer holds it open
  (Measurement.keeps_open): a rate opens an incident only over enough sends, but too few
  to say do not resolve it;
- notices: each (incident, opened/resolved, target) is one row, created in the same
  transaction as the transition; it is sent under its row lock (SKIP LOCKED, so another
  evaluation passes it by) and marked sent in that transaction.
A notice that fails is recorded on the timeline and tried again at the next evaluation,
up to MAX_NOTIFY_ATTEMPTS; a failing target never holds back the others, since each call
has a timeout and its errors are caught.

A rule that cannot measure (Redis or the broker down) is skipped: its open incidents
stay open rather than resolving on no evidence. The cost of one evaluation is the rules'
reads (operations/alert_rules.py) and one read of the open incidents.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime

from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from operations import notify
from operations.alert_rules import RULES, Measurement
from operations.models import (
    EventKind,
    Incident,
    IncidentEvent,
    IncidentNotification,
    Notice,
    NotificationStatus,
)

logger = logging.getLogger(__name__)

# At one evaluation a minute, a target that stays broken is tried for about an hour.
MAX_NOTIFY_ATTEMPTS = 60


@dataclass
class Evaluation:
    opened: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    skipped_rules: list[str] = field(default_factory=list)
    notices_sent: int = 0
    notices_failed: int = 0


def family_of(rule_key: str) -> str:
    return rule_key.split(":", 1)[0]


def evaluate_alerts(rules: dict | None = None) -> Evaluation:
    rules = RULES if rules is None else rules
    result = Evaluation()
    firing: dict[str, Measurement] = {}
    held: set[str] = set()
    measured: set[str] = set()
    for family, rule in rules.items():
        try:
            measurements = rule()
        except (DatabaseError, RedisError, KombuError, OSError) as exc:
            logger.warning("alert rule %s not evaluated: %s", family, type(exc).__name__)
            result.skipped_rules.append(family)
            continue
        except Exception:
            # A rule that breaks in an unforeseen way must not silence every other one.
            logger.exception("alert rule %s raised", family)
            result.skipped_rules.append(family)
            continue
        measured.add(family)
        firing.update((m.key, m) for m in measurements if m.firing)
        held.update(m.key for m in measurements if m.keeps_open)
    for measurement in firing.values():
        if incident_open(measurement):
            result.opened.append(measurement.key)
    open_incidents = Incident.objects.filter(resolved_at__isnull=True).values_list("pk", "rule_key")
    for pk, rule_key in list(open_incidents):
        stopped = family_of(rule_key) in measured and not (rule_key in held or rule_key in firing)
        if stopped and incident_resolve(pk):
            result.resolved.append(rule_key)
    result.notices_sent, result.notices_failed = send_pending_notices()
    return result


def incident_open(measurement: Measurement, *, now: datetime | None = None) -> bool:
    """Opens the rule key's incident, or refreshes the open one. True when opened here."""
    now = now or timezone.now()
    with transaction.atomic():
        current = (
            Incident.objects.select_for_update()
            .filter(rule_key=measurement.key, resolved_at__isnull=True)
            .first()
        )
        if current is not None:
            current.value = measurement.value
            current.summary = measurement.summary[:255]
            current.last_firing_at = now
            current.save(update_fields=["value", "summary", "last_firing_at"])
            return False
        try:
            with transaction.atomic():
                incident = Incident.objects.create(
                    rule_key=measurement.key,
                    severity=measurement.severity,
                    summary=measurement.summary[:255],
                    value=measurement.value,
                    threshold=measurement.threshold,
                    opened_at=now,
                    last_firing_at=now,
                )
        except IntegrityError:
            # Another evaluation opened it a moment ago; its notices are on their way.
            return False
        IncidentEvent.objects.create(
            incident=incident, at=now, kind=EventKind.OPENED, detail=incident.summary
        )
        _plan_notices(incident, Notice.OPENED, now)
    logger.warning("incident %s opened: %s", incident.pk, measurement.key)
    return True


def incident_resolve(pk: int, *, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    with transaction.atomic():
        incident = (
            Incident.objects.select_for_update().filter(pk=pk, resolved_at__isnull=True).first()
        )
        if incident is None:
            return False  # resolved by another evaluation meanwhile
        incident.resolved_at = now
        incident.save(update_fields=["resolved_at"])
        IncidentEvent.objects.create(
            incident=incident, at=now, kind=EventKind.RESOLVED, detail="the rule stopped firing"
        )
        _plan_notices(incident, Notice.RESOLVED, now)
    logger.warning("incident %s resolved: %s", incident.pk, incident.rule_key)
    return True


def _plan_notices(incident: Incident, notice: str, now: datetime) -> None:
    IncidentNotification.objects.bulk_create(
        IncidentNotification(incident=incident, notice=notice, target=target, created_at=now)
        for target in notify.configured_targets()
    )


def send_pending_notices() -> tuple[int, int]:
    """Sends every pending notice once, oldest first (an incident's "opened" before its
    "resolved"). Returns (sent, failed)."""
    pending = IncidentNotification.objects.filter(status=NotificationStatus.PENDING)
    sent = failed = 0
    for pk in list(pending.order_by("created_at", "pk").values_list("pk", flat=True)):
        outcome = _send_one(pk)
        sent += outcome is True
        failed += outcome is False
    return sent, failed


def _send_one(pk: int) -> bool | None:
    """None when another evaluation holds it or has sent it already."""
    with transaction.atomic():
        notification = (
            IncidentNotification.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("incident")
            .filter(pk=pk, status=NotificationStatus.PENDING)
            .first()
        )
        if notification is None:
            return None
        ok, detail = notify.send_notice(
            notification.target, notification.incident, notification.notice
        )
        now = timezone.now()
        notification.attempts += 1
        if ok:
            notification.status, notification.sent_at = NotificationStatus.SENT, now
            kind = EventKind.NOTIFIED
        elif notification.attempts >= MAX_NOTIFY_ATTEMPTS:
            notification.status, kind = NotificationStatus.GAVE_UP, EventKind.NOTIFY_GAVE_UP
        else:
            kind = EventKind.NOTIFY_FAILED
        notification.last_error = "" if ok else detail[:255]
        notification.save(update_fields=["status", "sent_at", "attempts", "last_error"])
        IncidentEvent.objects.create(
            incident=notification.incident,
            at=now,
            kind=kind,
            target=notification.target,
            detail=f"{notification.notice} notice, try {notification.attempts}: {detail}"[:255],
        )
    if not ok:
        logger.warning(
            "incident %s: %s notice to %s failed (%s)",
            notification.incident_id,
            notification.notice,
            notification.target,
            detail,
        )
    return ok
