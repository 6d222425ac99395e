"""Start-up checks: is PostgreSQL reachable, is Redis reachable? Say which and how to fix.

Used by `manage.py check_services` before the stack starts, so a newcomer gets one clear
line instead of a worker that retries the broker forever.
"""

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from django.conf import settings
from psycopg import sql

START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
START_REDIS = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no'
)


@dataclass(frozen=True)
class Problem:
    what: str
    url: str
    error: str
    fix: str

    def __str__(self) -> str:
        return (
            f"{self.what} is not reachable at {self.url}: {self.error}\n  Start it with: {self.fix}"
        )


def redacted(url: str) -> str:
    """The URL without its password, fit for a log line."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


def _postgres_kwargs(dbname: str) -> dict:
    db = settings.DATABASES["default"]
    return {
        "dbname": dbname,
        "user": db.get("USER") or None,
        "password": db.get("PASSWORD") or None,
        "host": db.get("HOST") or None,
        "port": db.get("PORT") or None,
        "connect_timeout": db["OPTIONS"]["connect_timeout"],
    }


def check_postgres(*, create_database: bool) -> Problem | None:
    name = settings.DATABASES["default"]["NAME"]
    url = redacted(settings.DATABASE_URL)
    try:
        with psycopg.connect(**_postgres_kwargs("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if not exists and create_database:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            elif not exists:
                return Problem("PostgreSQL database", url, f"database {name!r} does not exist",
                               f"createdb {name}")  # fmt: skip
    except psycopg.Error as exc:
        return Problem("PostgreSQL", url, str(exc).strip().splitlines()[0], START_POSTGRES)
    return None


def check_redis() -> Problem | None:
    url = redacted(settings.REDIS_URL)
    try:
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=3, socket_timeout=3
        )
        client.ping()
    except redis.RedisError as exc:
        return Problem("Redis", url, str(exc), START_REDIS)
    return None
