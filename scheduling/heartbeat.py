"""When the dispatcher last ran, for the health endpoint: Beat is alive if it is recent."""

import contextlib
import time

from redis.exceptions import RedisError

from channels_app.shared_state import redis_client

KEY = "companion:dispatch:last_tick"


def record_tick() -> None:
    with contextlib.suppress(RedisError):  # the health check reports Redis itself
        redis_client().set(KEY, f"{time.time():.3f}", ex=24 * 3600)


def seconds_since_last_tick() -> float | None:
    """None when no tick was ever recorded (or Redis lost it)."""
    value = redis_client().get(KEY)
    return None if value is None else max(0.0, time.time() - float(value))
