"""Celery's own work, as Prometheus sees it: tasks published (Beat's periodic ones among
them), and tasks run by outcome and duration, by task name (the app's own names: bounded).
Fed by Celery's signals (companion/celery.py)."""

import time

from prometheus_client import Counter, Histogram

published = Counter(
    "companion_celery_tasks_published_total",
    "Tasks handed to the broker, by task name (Beat's periodic tasks and the app's own).",
    ["task"],
)
finished = Counter(
    "companion_celery_tasks_total",
    "Tasks run to an end, by task name and state (success, failure, retry).",
    ["task", "state"],
)
duration_seconds = Histogram(
    "companion_celery_task_duration_seconds",
    "How long a task ran, by task name.",
    ["task"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)

_started: dict[str, float] = {}


def task_published(name: str) -> None:
    published.labels(name).inc()


def task_started(task_id: str) -> None:
    _started[task_id] = time.monotonic()


def task_ended(task_id: str, name: str, state: str) -> None:
    started = _started.pop(task_id, None)
    if started is not None:
        duration_seconds.labels(name).observe(time.monotonic() - started)
    finished.labels(name, (state or "unknown").lower()).inc()
