"""The Redis connection shared by the rate limiter and the circuit breakers."""

import os

import redis
from django.conf import settings

_clients: dict[tuple[int, str], redis.Redis] = {}


def redis_client() -> redis.Redis:
    """One client per process (prefork children must not share a parent's sockets)."""
    key = (os.getpid(), settings.REDIS_URL)
    client = _clients.get(key)
    if client is None:
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30
        )
        _clients[key] = client
    return client
