"""Encryption at rest: what a copy of the database shows, the audit trail, key rotation,
and Redis key names (docs/security.md, items 20 and 21)."""

import io

import pytest
from auditlog.models import LogEntry
from cryptography.fernet import Fernet
from django.core import serializers
from django.core.exceptions import FieldError
from django.core.management import call_command
from django.db import connection

from channels_app.models import InboxMessage
from channels_app.ratelimit import reserve_slots
from channels_app.shared_state import redis_client
from conversations.inbound import inbound_receive
from patients.encryption import PREFIX
from patients.models import Contact, InboundUpdate
from scheduling.models import ScheduledMessage
from scheduling.services import message_schedule
from tests.conftest import from_now
from tests.test_settings import start_up

SECRET = "Take 5 mg of warfarin, Ms Example"


def stored(table: str, column: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])  # noqa: S608
        return cursor.fetchone()[0]


def test_content_inbox_bodies_and_inbound_payloads_are_stored_encrypted(patient):
    message = message_schedule(patient=patient, content=SECRET, starts_at=from_now(600))
    inbox = InboxMessage.objects.create(patient=patient, body=SECRET)
    inbound_receive(channel="telegram", external_id="77", payload={"text": SECRET})
    update = InboundUpdate.objects.get(external_id="77")

    for table, column, pk in (
        ("scheduling_scheduledmessage", "content", message.pk),
        ("channels_app_inboxmessage", "body", inbox.pk),
        ("patients_inboundupdate", "payload", update.pk),
    ):
        raw = stored(table, column, pk)
        assert raw.startswith(PREFIX) and "warfarin" not in raw, table
    assert ScheduledMessage.objects.get(pk=message.pk).content == SECRET
    assert InboxMessage.objects.get(pk=inbox.pk).body == SECRET
    assert InboundUpdate.objects.get(pk=update.pk).payload == {"text": SECRET}


def test_a_contacts_address_is_stored_encrypted_and_found_by_its_keyed_hash(make_patient):
    patient = make_patient(chat_id="918273645")
    contact = patient.contacts.get()
    raw = stored("patients_contact", "address", contact.pk)
    assert raw.startswith(PREFIX) and "918273645" not in raw
    hashed = stored("patients_contact", "address_hash", contact.pk)
    assert "918273645" not in hashed and len(hashed) == 64
    assert Contact.objects.at("telegram", "918273645").get() == contact
    assert not Contact.objects.at("sms", "918273645").exists()  # the channel is in the hash
    with pytest.raises(FieldError, match="encrypted at rest"):
        Contact.objects.filter(address="918273645").exists()  # would quietly find nothing
    entries = LogEntry.objects.get_for_object(contact)
    assert entries.exists() and "918273645" not in repr([e.changes for e in entries])


def test_the_audit_trail_records_a_content_change_but_not_the_text(patient):
    message = message_schedule(patient=patient, content=SECRET, starts_at=from_now(600))
    message.content = "Take 10 mg of warfarin"
    message.save()
    entries = LogEntry.objects.get_for_object(message)
    assert entries.count() == 2
    for entry in entries:
        assert "warfarin" not in repr(entry.changes) + entry.changes_text
    assert "content" in entries.latest("pk").changes


def test_rotation_re_encrypts_every_row_with_the_new_key_and_encrypts_old_plain_rows(
    patient, settings
):
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    message = message_schedule(patient=patient, content=SECRET, starts_at=from_now(600))
    legacy = InboxMessage.objects.create(patient=patient, body="x")
    with connection.cursor() as cursor:  # a row written before encryption was switched on
        sql = "UPDATE channels_app_inboxmessage SET body = %s WHERE id = %s"
        cursor.execute(sql, [SECRET, legacy.pk])
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]

    out = io.StringIO()
    call_command("rotate_encryption_key", "--batch", "1", stdout=out)
    assert "scheduling_scheduledmessage.content: 1 re-encrypted" in out.getvalue()
    assert "channels_app_inboxmessage.body: 1 re-encrypted" in out.getvalue()

    settings.FIELD_ENCRYPTION_KEYS = [new_key]  # the old key is gone
    assert ScheduledMessage.objects.get(pk=message.pk).content == SECRET
    assert InboxMessage.objects.get(pk=legacy.pk).body == SECRET
    assert stored("channels_app_inboxmessage", "body", legacy.pk).startswith(PREFIX)
    again = io.StringIO()
    call_command("rotate_encryption_key", stdout=again)
    assert "scheduling_scheduledmessage.content: 0 re-encrypted, 1 already" in again.getvalue()


def test_new_key_prints_a_usable_fernet_key(db):
    out = io.StringIO()
    call_command("rotate_encryption_key", "--new-key", stdout=out)
    Fernet(out.getvalue().strip().encode())


def test_redis_keys_never_name_a_chat_id(db):
    reserve_slots("telegram", ["987654321"])
    keys = [key.decode() for key in redis_client().keys("*")]
    assert any(key.startswith("ratelimit:telegram:") for key in keys)
    assert not [key for key in keys if "987654321" in key]


@pytest.mark.parametrize("missing", ["FIELD_ENCRYPTION_KEYS", "BLIND_INDEX_KEY"])
def test_production_refuses_to_start_without_the_keys(missing):
    result = start_up(DJANGO_DEBUG="false", **{missing: ""})
    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEYS and BLIND_INDEX_KEY must be set" in result.stderr


def test_a_serialized_payload_is_plain_json_and_loading_it_encrypts_it_once(db):
    row = InboundUpdate.objects.create(channel="telegram", external_id="9", payload={"a": 1})
    text = serializers.serialize("json", [row])
    assert '"a": 1' in text and PREFIX not in text
    InboundUpdate.objects.all().delete()
    for loaded in serializers.deserialize("json", text):
        loaded.save()
    assert InboundUpdate.objects.get().payload == {"a": 1}
    assert stored("patients_inboundupdate", "payload", row.pk).startswith(PREFIX)
