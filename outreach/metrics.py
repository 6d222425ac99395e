"""What the companion's own initiative reports to Prometheus: check-ins and follow-ups
by the path that wrote them (llm, fallback) or skipped. Counted once committed."""

from django.db import transaction
from prometheus_client import Counter

check_ins = Counter(
    "companion_check_ins_total",
    "Check-ins finished, by path: llm (the model wrote it), fallback (the template) or "
    "skipped (its window passed, or the patient can no longer get it).",
    ["path"],
)
follow_ups = Counter(
    "companion_follow_ups_total",
    "Follow-ups finished, by path: llm, fallback or skipped.",
    ["path"],
)


def check_in_finished(path: str) -> None:
    transaction.on_commit(lambda: check_ins.labels(path).inc())


def follow_up_finished(path: str) -> None:
    transaction.on_commit(lambda: follow_ups.labels(path).inc())
