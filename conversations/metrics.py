"""What patients' inbound messages report to Prometheus: updates processed, failed (left
for the sweep) and skipped (already processed or being processed), by channel."""

from prometheus_client import Counter

inbound_updates = Counter(
    "companion_inbound_updates_total",
    "Inbound updates (Telegram, WhatsApp) by channel and result: processed, failed or "
    "skipped; SMS, answered in the webhook's request, count as processed or skipped too.",
    ["channel", "result"],
)
