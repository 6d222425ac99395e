"""Backups: a real pg_dump of the test database restored by pg_restore into a new
database, where the row is found; rotation by count and age; the guards."""

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.core.management import call_command
from django.core.management.base import CommandError

from operations.backups import (
    BackupError,
    backup_name,
    create_backup,
    default_target,
    list_backups,
    restore_backup,
    rotate_backups,
)
from patients.models import Organization

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def new_database():
    """An empty database on the test server (createdb), dropped afterwards."""
    target = default_target()
    name = f"companion_restore_{uuid.uuid4().hex[:10]}"
    env = target.environment()
    subprocess.run(["createdb", *target.arguments(), name], env=env, check=True)  # noqa: S607
    yield name
    subprocess.run(["dropdb", "--if-exists", *target.arguments(), name], env=env, check=True)  # noqa: S607


def rows_in(database: str, sql: str) -> list[tuple]:
    target = default_target()
    with psycopg.connect(
        host=target.host or None,
        port=target.port or None,
        user=target.user or None,
        password=target.password or None,
        dbname=database,
    ) as conn:
        return conn.execute(sql).fetchall()


def test_a_backup_restores_into_a_new_database_with_the_data(
    transactional_db, tmp_path, new_database, settings
):
    settings.BACKUP_COMPRESSION = 9
    Organization.objects.create(name="Backed Up Clinic", slug="backed-up-clinic")
    storage = FileSystemStorage(location=tmp_path)

    backup = create_backup(storage=storage)
    restore_backup(backup.name, into=new_database, storage=storage)

    assert (tmp_path / backup.name).read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format
    assert backup.size == (tmp_path / backup.name).stat().st_size
    found = rows_in(
        new_database, "SELECT name FROM patients_organization WHERE slug = 'backed-up-clinic'"
    )
    assert found == [("Backed Up Clinic",)]
    # The whole schema came along, migrations included.
    assert rows_in(new_database, "SELECT count(*) FROM django_migrations")[0][0] > 10


def test_the_commands_back_up_into_the_storage_and_restore_by_name(
    transactional_db, tmp_path, new_database, settings
):
    settings.STORAGES = {
        **settings.STORAGES,
        "backups": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }
    Organization.objects.create(name="Command Clinic", slug="command-clinic")

    call_command("backup_database")
    [backup] = list_backups()
    call_command("restore_database", backup.name, "--into", new_database)

    assert [p.name for p in tmp_path.iterdir()] == [backup.name]
    assert rows_in(new_database, "SELECT slug FROM patients_organization") == [("command-clinic",)]


def test_restore_refuses_the_live_database_and_unknown_backups(db, tmp_path):
    storage = FileSystemStorage(location=tmp_path)
    name = backup_name("x", datetime(2026, 1, 1, tzinfo=UTC))
    storage.save(name, ContentFile(b"PGDMP"))

    with pytest.raises(BackupError, match="the database this site runs on"):
        restore_backup(name, into=django_settings.DATABASES["default"]["NAME"], storage=storage)
    with pytest.raises(BackupError, match="no backup named 'nothing.dump'"):
        restore_backup("nothing.dump", into="elsewhere", storage=storage)
    with pytest.raises(BackupError, match="not a database name"):
        restore_backup(name, into="x; DROP DATABASE y", storage=storage)
    with pytest.raises(CommandError, match="no backup named"):
        call_command("restore_database", "nothing.dump", "--into", "elsewhere")


def test_a_pg_dump_older_than_the_server_is_refused_naming_both(db, tmp_path, settings):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    program = fake_bin / "pg_dump"
    program.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 13.1'\n")
    program.chmod(0o755)
    settings.PG_BIN_DIR = str(fake_bin)

    with pytest.raises(BackupError, match=r"pg_dump is version 13 and the server 1[5-9]"):
        create_backup(storage=FileSystemStorage(location=tmp_path / "out"))
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_rotation_keeps_the_newest_by_count_and_deletes_by_age(tmp_path, settings):
    settings.BACKUP_KEEP_COUNT, settings.BACKUP_KEEP_DAYS = 3, 10
    storage = FileSystemStorage(location=tmp_path)
    now = datetime(2026, 6, 30, 12, tzinfo=UTC)
    ages = [0, 1, 2, 3, 4, 20]  # days
    names = [backup_name("companion", now - timedelta(days=days)) for days in ages]
    for name in names:
        storage.save(name, ContentFile(b"PGDMP"))
    storage.save("notes.txt", ContentFile(b"not a backup"))

    deleted = rotate_backups(now=now, storage=storage)

    assert sorted(deleted) == sorted(names[3:])
    assert sorted(os.listdir(tmp_path)) == sorted([*names[:3], "notes.txt"])


def test_rotation_deletes_by_age_within_the_count_but_never_the_newest(tmp_path, settings):
    settings.BACKUP_KEEP_COUNT, settings.BACKUP_KEEP_DAYS = 5, 7
    storage = FileSystemStorage(location=tmp_path)
    now = datetime(2026, 6, 30, 12, tzinfo=UTC)
    names = [backup_name("companion", now - timedelta(days=days)) for days in (30, 40, 50)]
    for name in names:
        storage.save(name, ContentFile(b"PGDMP"))

    deleted = rotate_backups(now=now, storage=storage)

    assert sorted(deleted) == sorted(names[1:])
    assert [b.name for b in list_backups(storage)] == [names[0]]


def settings_in_a_new_process(**env: str) -> subprocess.CompletedProcess:
    code = (
        "from django.conf import settings; "
        "print(settings.BACKUP_ENABLED, settings.BACKUP_DESTINATION_CONFIGURED)"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BACKUP_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, "DJANGO_SETTINGS_MODULE": "companion.settings", **env},
    )


def test_scheduled_backups_are_on_by_default_only_with_a_destination(tmp_path):
    assert settings_in_a_new_process().stdout.split() == ["False", "False"]
    assert settings_in_a_new_process(BACKUP_DIR=str(tmp_path)).stdout.split() == ["True", "True"]
    off = settings_in_a_new_process(BACKUP_DIR=str(tmp_path), BACKUP_ENABLED="false")
    assert off.stdout.split() == ["False", "True"]
    s3 = settings_in_a_new_process(BACKUP_STORAGE="s3", BACKUP_S3_BUCKET="clinic-backups")
    assert s3.stdout.split() == ["True", "True"]

    refused = settings_in_a_new_process(BACKUP_ENABLED="true")
    assert refused.returncode != 0 and "BACKUP_ENABLED is on but no destination" in refused.stderr
    wrong = settings_in_a_new_process(BACKUP_STORAGE="ftp")
    assert "BACKUP_STORAGE='ftp'" in wrong.stderr


def test_the_scheduled_task_skips_when_backups_are_off(settings):
    from operations.tasks import back_up_database

    settings.BACKUP_ENABLED = False

    assert back_up_database.run() == {"skipped": "BACKUP_ENABLED is off"}
