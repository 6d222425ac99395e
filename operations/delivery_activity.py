"""What the database says about sending, for the operators' status page: how long since
the last send, sends per minute over the last hour, the oldest delivery still queued and
still sending, and the failure rate per channel over the last hour.

Every read is bounded by an index, so its cost follows the last hour's deliveries (or is
one index probe), never the table: `delivery_sent_idx` (sent deliveries by sent_at) for
the sends, the (status, occurrence_at) index for the oldest ones and the failure rates.
tests/test_status_panel.py EXPLAINs each of them.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Q
from django.db.models.functions import TruncMinute
from django.utils import timezone

from scheduling.models import Delivery, DeliveryStatus

WINDOW = timedelta(hours=1)
# Final outcomes counted in the failure rate (cancelled ones are nobody's failure).
OUTCOMES = (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.EXPIRED)


@dataclass(frozen=True)
class Oldest:
    delivery_id: int
    occurrence_at: datetime
    age_seconds: float


def last_sent_at() -> datetime | None:
    """The latest send: one probe of the end of delivery_sent_idx."""
    return (
        Delivery.objects.filter(status=DeliveryStatus.SENT, sent_at__isnull=False)
        .order_by("-sent_at")
        .values_list("sent_at", flat=True)
        .first()
    )


def sends_per_minute(*, now: datetime) -> list[dict]:
    """Sends in each minute of the last hour, oldest first; minutes without any included."""
    start = (now - WINDOW).replace(second=0, microsecond=0) + timedelta(minutes=1)
    counted = dict(
        Delivery.objects.filter(status=DeliveryStatus.SENT, sent_at__gte=start, sent_at__lte=now)
        .annotate(minute=TruncMinute("sent_at"))
        .values_list("minute")
        .annotate(sent=Count("pk"))
        .values_list("minute", "sent")
    )
    minutes = [start + timedelta(minutes=step) for step in range(60)]
    return [{"minute": minute.isoformat(), "sent": counted.get(minute, 0)} for minute in minutes]


def oldest_in(status: str, *, now: datetime) -> Oldest | None:
    """The delivery of that status whose occurrence is the oldest: the first entry of the
    (status, occurrence_at) index."""
    row = (
        Delivery.objects.filter(status=status)
        .order_by("occurrence_at")
        .values_list("pk", "occurrence_at")
        .first()
    )
    if row is None:
        return None
    return Oldest(row[0], row[1], round((now - row[1]).total_seconds(), 1))


def failure_rates(*, now: datetime) -> dict[str, dict]:
    """Per channel, of the deliveries due in the last hour that have an outcome: how many
    were sent, failed and expired, and the share that did not go out."""
    rows = (
        Delivery.objects.filter(status__in=OUTCOMES, occurrence_at__gte=now - WINDOW)
        .values("channel")
        .annotate(**{status: Count("pk", filter=Q(status=status)) for status in OUTCOMES})
        .order_by("channel")
    )
    rates = {}
    for row in rows:
        total = sum(row[status] for status in OUTCOMES)
        lost = row[DeliveryStatus.FAILED] + row[DeliveryStatus.EXPIRED]
        rates[row["channel"]] = {
            **{status: row[status] for status in OUTCOMES},
            "failure_rate": round(lost / total, 4) if total else None,
        }
    return rates


def delivery_activity(*, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    sent_at = last_sent_at()
    per_minute = sends_per_minute(now=now)
    oldest = {
        status: oldest_in(status, now=now)
        for status in (DeliveryStatus.QUEUED, DeliveryStatus.SENDING)
    }
    return {
        "last_sent_at": sent_at.isoformat() if sent_at else None,
        "last_sent_age_seconds": round((now - sent_at).total_seconds(), 1) if sent_at else None,
        "sent_last_hour": sum(row["sent"] for row in per_minute),
        "sent_per_minute": per_minute,
        "oldest_queued": _oldest_dict(oldest[DeliveryStatus.QUEUED]),
        "oldest_sending": _oldest_dict(oldest[DeliveryStatus.SENDING]),
        "failure_rate_by_channel": failure_rates(now=now),
    }


def _oldest_dict(oldest: Oldest | None) -> dict | None:
    if oldest is None:
        return None
    return {
        "delivery_id": oldest.delivery_id,
        "occurrence_at": oldest.occurrence_at.isoformat(),
        "age_seconds": oldest.age_seconds,
    }
