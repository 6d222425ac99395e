"""Attachments and backups in an S3 bucket (ATTACHMENT_STORAGE=s3, BACKUP_STORAGE=s3):
the storages the shipped settings build from those variables, against moto's S3 server
on 127.0.0.1 over HTTP, as against a MinIO or AWS endpoint."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import requests

from operations.backups import create_backup, list_backups, restore_backup, rotate_backups
from patients.models import Organization
from scheduling.attachments import Upload, attachment_bytes
from scheduling.models import Attachment
from scheduling.services import message_schedule
from tests.conftest import from_now
from tests.test_attachments import jpeg
from tests.test_backups import new_database, rows_in  # noqa: F401 - a fixture

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"AWS_ACCESS_KEY_ID": "testing-key", "AWS_SECRET_ACCESS_KEY": "testing-secret"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """moto's standalone S3 server, its own process on an ephemeral port."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"{url}/moto-api/", timeout=1)
            break
        except requests.ConnectionError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise AssertionError(log.read_text()[-2000:]) from None
            time.sleep(0.1)
    yield url
    server.terminate()
    server.wait(10)


def shipped_storages(**env: str) -> dict:
    """settings.STORAGES as companion/settings.py builds it from these variables, read in a
    fresh interpreter as a process starting up would."""
    script = "from django.conf import settings; import json; print(json.dumps(settings.STORAGES))"
    answer = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "companion.settings", **env},
    )
    assert answer.returncode == 0, answer.stderr[-2000:]
    return json.loads(answer.stdout.splitlines()[-1])


@pytest.fixture
def bucket(s3_endpoint, settings):
    """A new bucket, and the attachments and backups storages the shipped settings make of
    ATTACHMENT_STORAGE=s3 and BACKUP_STORAGE=s3 pointing at it."""
    name = f"clinic-{time.monotonic_ns()}"
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="eu-central-1",
        aws_access_key_id=KEYS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"],
    )
    client.create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"}
    )
    shipped = shipped_storages(
        **KEYS,
        ATTACHMENT_STORAGE="s3",
        ATTACHMENT_S3_BUCKET=name,
        ATTACHMENT_S3_ENDPOINT_URL=s3_endpoint,
        ATTACHMENT_S3_REGION="eu-central-1",
        BACKUP_STORAGE="s3",
        BACKUP_S3_BUCKET=name,
        BACKUP_S3_ENDPOINT_URL=s3_endpoint,
        BACKUP_S3_REGION="eu-central-1",
        BACKUP_S3_ACCESS_KEY_ID=KEYS["AWS_ACCESS_KEY_ID"],
        BACKUP_S3_SECRET_ACCESS_KEY=KEYS["AWS_SECRET_ACCESS_KEY"],
    )
    assert shipped["attachments"]["BACKEND"] == "storages.backends.s3.S3Storage"
    settings.STORAGES = {
        **settings.STORAGES,
        "attachments": shipped["attachments"],
        "backups": shipped["backups"],
    }
    return client, name


def keys_in(bucket) -> list[str]:
    client, name = bucket
    return [item["Key"] for item in client.list_objects_v2(Bucket=name).get("Contents", [])]


def test_an_attachment_is_stored_encrypted_in_the_bucket_and_deleted_with_its_message(
    bucket, patient, django_capture_on_commit_callbacks
):
    client, name = bucket
    photo = jpeg()
    message = message_schedule(
        patient=patient, content="", starts_at=from_now(600), attachment=Upload(photo, "rash.jpg")
    )

    [key] = keys_in(bucket)
    stored = client.get_object(Bucket=name, Key=key)["Body"].read()
    assert stored.startswith(b"enc1:") and photo not in stored  # encrypted at rest
    assert "rash" not in key
    assert client.get_object_acl(Bucket=name, Key=key)["Grants"][0]["Permission"] == "FULL_CONTROL"
    assert attachment_bytes(Attachment.objects.get(message=message)) == photo

    with django_capture_on_commit_callbacks(execute=True):
        message.delete()

    assert keys_in(bucket) == []


def test_a_backup_goes_to_the_bucket_under_its_prefix_and_restores_from_it(
    transactional_db,
    bucket,
    new_database,  # noqa: F811 - the fixture
):
    Organization.objects.create(name="Bucket Clinic", slug="bucket-clinic")

    backup = create_backup()

    assert keys_in(bucket) == [f"backups/{backup.name}"]
    assert [b.name for b in list_backups()] == [backup.name]
    restore_backup(backup.name, into=new_database)
    found = rows_in(
        new_database, "SELECT name FROM patients_organization WHERE slug = 'bucket-clinic'"
    )
    assert found == [("Bucket Clinic",)]
    assert rotate_backups() == []  # the newest is never deleted
