"""The Redis connection shared by the rate limiter and the circuit breakers."""

import os

import redis
from django.conf import settings
from redis.commands.core import Script

_clients: dict[tuple[int, str], redis.Redis] = {}
_scripts: dict[tuple[int, str, str], Script] = {}


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


def run_script(source: str, keys: list[str], args: list) -> object:
    """A Lua script by its SHA (EVALSHA), loaded on first use: its text crosses the wire
    once per process rather than with every call (the limiter's runs for every send, up
    to 1,000 a second). A Redis that restarted and lost it is sent the text again."""
    key = (os.getpid(), settings.REDIS_URL, source)
    script = _scripts.get(key)
    if script is None:
        script = _scripts[key] = redis_client().register_script(source)
    return script(keys=keys, args=args)
