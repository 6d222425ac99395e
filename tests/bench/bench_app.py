"""The project's Celery app plus one near no-op task, for the ceiling measurement.

Workers for the ceiling run `celery -A tests.bench.bench_app worker -Q bench`; the task
only counts itself in Redis, so the figure is Celery's own cost with our broker and
worker settings.
"""

import redis
from django.conf import settings

from companion.celery import app

COUNTER = "bench:noop:done"


@app.task(name="bench.noop", ignore_result=True)
def noop() -> None:
    _client().incr(COUNTER)


_redis: list[redis.Redis] = []


def _client() -> redis.Redis:
    if not _redis:
        _redis.append(redis.Redis.from_url(settings.REDIS_URL))
    return _redis[0]
