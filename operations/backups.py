"""Backups of the database: pg_dump in its custom format, compressed, kept in a Django
storage (a directory, or an S3-compatible bucket), rotated, and restored with
pg_restore into a database named by the operator.

A dump is written to a temporary file first and then saved to the storage under a name
that carries its UTC time (companion-<database>-<YYYYmmddTHHMMSSZ>.dump), so a dump that
failed half-way is never in the storage, and rotation reads ages from the names rather
than from whatever modification time a bucket reports. The database's password goes to
pg_dump and pg_restore in their environment (PGPASSWORD), never on a command line a
`ps` would show.

pg_dump must be of the server's major version or newer (PG_BIN_DIR says where it is);
`pg_dump --version` is compared with the server's before a dump, so a mismatch is an
error that names both versions instead of pg_dump's own refusal.
"""

import logging
import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core.files import File
from django.core.files.storage import Storage, storages
from django.db import connection
from django.utils import timezone

logger = logging.getLogger(__name__)

NAME = re.compile(r"^companion-(?P<database>[\w.-]+)-(?P<stamp>\d{8}T\d{6}Z)\.dump$")
STAMP = "%Y%m%dT%H%M%SZ"
# A dump or a restore that takes longer than this is stopped and reported.
COMMAND_TIMEOUT_SECONDS = 6 * 3600


class BackupError(Exception):
    """A backup or restore that did not happen; the message says why (no password)."""


@dataclass(frozen=True)
class Backup:
    name: str
    taken_at: datetime
    size: int | None = None


@dataclass(frozen=True)
class Target:
    """A database to connect to: libpq's keywords, and the password kept apart."""

    name: str
    host: str
    port: str
    user: str
    password: str

    def arguments(self) -> list[str]:
        found = [("--host", self.host), ("--port", self.port), ("--username", self.user)]
        return [part for flag, value in found if value for part in (flag, value)]

    def environment(self) -> dict[str, str]:
        env = {**os.environ}
        env.pop("PGPASSWORD", None)
        if self.password:
            env["PGPASSWORD"] = self.password
        return env


def backup_storage() -> Storage:
    return storages["backups"]


def default_target() -> Target:
    db = settings.DATABASES["default"]
    return Target(
        name=db["NAME"],
        host=db.get("HOST") or "",
        port=str(db.get("PORT") or ""),
        user=db.get("USER") or "",
        password=db.get("PASSWORD") or "",
    )


def target_from(given: str) -> Target:
    """A database name (on the default database's server, with its credentials) or a
    postgres:// URL."""
    if "://" not in given:
        if not re.fullmatch(r"[\w.-]{1,63}", given):
            raise BackupError(f"{given!r} is not a database name or a postgres:// URL")
        base = default_target()
        return Target(given, base.host, base.port, base.user, base.password)
    url = urlsplit(given)
    if url.scheme not in {"postgres", "postgresql"} or not url.path.strip("/"):
        raise BackupError("the URL must be postgres://user:password@host:port/database")
    return Target(
        name=unquote(url.path.strip("/")),
        host=url.hostname or "",
        port=str(url.port or ""),
        user=unquote(url.username or ""),
        password=unquote(url.password or ""),
    )


def pg_command(program: str) -> str:
    return str(Path(settings.PG_BIN_DIR) / program) if settings.PG_BIN_DIR else program


def backup_name(database: str, at: datetime) -> str:
    return f"companion-{database}-{at.astimezone(UTC).strftime(STAMP)}.dump"


def parse_backup_name(name: str) -> datetime | None:
    match = NAME.match(name)
    if match is None:
        return None
    return datetime.strptime(match["stamp"], STAMP).replace(tzinfo=UTC)


def list_backups(storage: Storage | None = None) -> list[Backup]:
    """The backups in the storage, newest first; other files there are left alone."""
    storage = storage or backup_storage()
    try:
        _, files = storage.listdir("")
    except FileNotFoundError:
        return []
    found = [Backup(name, at) for name in files if (at := parse_backup_name(name)) is not None]
    return sorted(found, key=lambda backup: backup.taken_at, reverse=True)


def create_backup(*, now: datetime | None = None, storage: Storage | None = None) -> Backup:
    """Dumps the default database into the storage; raises BackupError on any failure."""
    storage = storage or backup_storage()
    target = default_target()
    check_client_version()
    name = backup_name(target.name, now or timezone.now())
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="companion-backup-") as workdir:
        path = Path(workdir) / name
        _run(
            [
                pg_command("pg_dump"),
                "--format=custom",
                f"--compress={settings.BACKUP_COMPRESSION}",
                "--no-password",
                f"--file={path}",
                *target.arguments(),
                target.name,
            ],
            target,
            what="pg_dump",
        )
        size = path.stat().st_size
        with path.open("rb") as dump:
            saved = storage.save(name, File(dump, name=name))
    logger.info("backup %s written: %d bytes in %.1f s", saved, size, time.monotonic() - started)
    return Backup(saved, parse_backup_name(saved) or timezone.now(), size)


def restore_backup(name: str, *, into: str, storage: Storage | None = None) -> Target:
    """Restores a backup into another, existing database (created with createdb): never
    into the database this site runs on."""
    storage = storage or backup_storage()
    target = target_from(into)
    live = default_target()
    if (target.name, target.host or "", target.port or "") == (live.name, live.host, live.port):
        raise BackupError(
            f"{target.name!r} is the database this site runs on: restore into a new one "
            "(createdb), check it, then switch DATABASE_URL to it"
        )
    if parse_backup_name(name) is None or not storage.exists(name):
        raise BackupError(f"no backup named {name!r} (manage.py backup_database --list)")
    with tempfile.TemporaryDirectory(prefix="companion-restore-") as workdir:
        path = Path(workdir) / name
        with storage.open(name, "rb") as source, path.open("wb") as copy:
            for chunk in iter(lambda: source.read(1024 * 1024), b""):
                copy.write(chunk)
        _run(
            [
                pg_command("pg_restore"),
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--single-transaction",
                "--no-password",
                *target.arguments(),
                f"--dbname={target.name}",
                str(path),
            ],
            target,
            what="pg_restore",
        )
    logger.info("backup %s restored into database %s", name, target.name)
    return target


def rotate_backups(*, now: datetime | None = None, storage: Storage | None = None) -> list[str]:
    """Deletes every backup beyond the newest BACKUP_KEEP_COUNT and every one older than
    BACKUP_KEEP_DAYS, except the newest: a schedule that stopped must not leave none.
    Returns the names deleted."""
    storage = storage or backup_storage()
    now = now or timezone.now()
    oldest_kept = now - timedelta(days=settings.BACKUP_KEEP_DAYS)
    backups = list_backups(storage)
    doomed = [
        backup.name
        for position, backup in enumerate(backups)
        if position > 0
        and (position >= settings.BACKUP_KEEP_COUNT or backup.taken_at < oldest_kept)
    ]
    for name in doomed:
        storage.delete(name)
    if doomed:
        logger.info("backup rotation deleted %d backups", len(doomed))
    return doomed


def back_up_and_rotate() -> dict:
    """The scheduled job: a backup, then rotation (only after a backup succeeded)."""
    backup = create_backup()
    deleted = rotate_backups()
    return {"backup": backup.name, "bytes": backup.size, "deleted": len(deleted)}


def check_client_version() -> None:
    """pg_dump refuses a server newer than itself; say so before starting."""
    try:
        output = subprocess.run(  # noqa: S603 - a fixed program, no shell
            [pg_command("pg_dump"), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise BackupError(f"pg_dump cannot be run ({type(exc).__name__}); set PG_BIN_DIR") from exc
    match = re.search(r"(\d+)(?:\.\d+)?", output)
    client = int(match[1]) if match else 0
    connection.ensure_connection()
    server = connection.pg_version // 10000
    if client < server:
        raise BackupError(
            f"pg_dump is version {client} and the server {server}: install the PostgreSQL "
            f"{server} client and point PG_BIN_DIR at it (e.g. /usr/lib/postgresql/{server}/bin)"
        )


def _run(command: list[str], target: Target, *, what: str) -> None:
    try:
        finished = subprocess.run(  # noqa: S603 - no shell; arguments are ours or checked
            command,
            env=target.environment(),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise BackupError(f"{what} did not run ({type(exc).__name__})") from exc
    if finished.returncode != 0:
        detail = finished.stderr.strip().splitlines()[-3:]
        raise BackupError(f"{what} failed (exit {finished.returncode}): {' '.join(detail)}")
