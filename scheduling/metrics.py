"""What scheduling reports to Prometheus: deliveries by outcome, attempts, how late the
sent ones were, and the dispatcher's ticks. Labels are bounded (channel, status, outcome,
error code): never a patient, a message or an organization.

Outcomes are counted once their transaction commits (transaction.on_commit), so a rolled
back recording is not counted. The backlog, the queues and the breakers are read when
Prometheus scrapes (operations/metrics_collector.py).
"""

import re
from datetime import timedelta

from django.db import transaction
from prometheus_client import Counter, Histogram

# Sent minus due: a tick (1 s) and a batch make most sends a second or two late; retries,
# quiet providers and outages make the rest, up to the delivery window (an hour).
LATENESS_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
TICK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

deliveries = Counter(
    "companion_deliveries_total",
    "Deliveries that reached an end (sent, failed, expired, cancelled), by channel, status "
    "and error code (empty when sent).",
    ["channel", "status", "error_code"],
)
attempts = Counter(
    "companion_delivery_attempts_total",
    "Send attempts by channel, outcome (sent, transient, permanent, blocked, interrupted) "
    "and error code.",
    ["channel", "outcome", "error_code"],
)
lateness_seconds = Histogram(
    "companion_delivery_lateness_seconds",
    "Sent minus due (the occurrence's send time, or a manual retry's), by channel.",
    ["channel"],
    buckets=LATENESS_BUCKETS,
)
tick_seconds = Histogram(
    "companion_dispatcher_tick_duration_seconds",
    "How long one dispatcher tick took (claiming due messages and publishing held ones).",
    buckets=TICK_BUCKETS,
)
rows_claimed = Counter(
    "companion_dispatcher_rows_claimed_total",
    "Scheduled messages the dispatcher claimed (each became one or more deliveries).",
)

# Error codes are short and stable (channels_app.base.ChannelError), but some carry a
# provider's number (whatsapp_131026, smtp_550): kept, as long as they look like a code.
_CODE = re.compile(r"^[a-z0-9_]{1,40}$")


def error_label(code: str) -> str:
    return code if not code or _CODE.match(code) else "other"


def delivery_ended(channel: str, status: str, error_code: str = "", count: int = 1) -> None:
    labels = (channel, status, error_label(error_code))
    transaction.on_commit(lambda: deliveries.labels(*labels).inc(count))


def attempt_ended(channel: str, outcome: str, error_code: str = "") -> None:
    transaction.on_commit(lambda: attempts.labels(channel, outcome, error_label(error_code)).inc())


def deliveries_sent(sent) -> None:
    """For Delivery rows just marked sent (message loaded): each one's count, attempt and
    lateness, after commit."""
    rows = [(d.channel, (d.sent_at - _due_at(d)).total_seconds()) for d in sent]

    def count() -> None:
        for channel, late in rows:
            deliveries.labels(channel, "sent", "").inc()
            attempts.labels(channel, "sent", "").inc()
            lateness_seconds.labels(channel).observe(max(0.0, late))

    transaction.on_commit(count)


def _due_at(delivery):
    """When the delivery was due: its window ends delivery_window_seconds after that."""
    return delivery.expires_at - timedelta(seconds=delivery.message.delivery_window_seconds)
