"""A contact's address is encrypted at rest and found by its keyed hash (blind index):
the hash is filled and every address encrypted here, in batches; the audit trail forgets
the addresses it kept."""

from django.db import migrations, models

import patients.fields


def hash_and_encrypt(apps, schema_editor) -> None:
    Contact = apps.get_model("patients", "Contact")
    # Saving runs the hash field's pre_save and the address field's encryption.
    for contact in Contact.objects.order_by("pk").iterator(chunk_size=1000):
        contact.save(update_fields=["address", "address_hash"])


def forget_addresses_in_audit_trail(apps, schema_editor) -> None:
    LogEntry = apps.get_model("auditlog", "LogEntry")
    ContentType = apps.get_model("contenttypes", "ContentType")
    kind = ContentType.objects.filter(app_label="patients", model="contact").first()
    if kind is None:
        return
    for entry in LogEntry.objects.filter(content_type=kind).iterator(chunk_size=1000):
        changes = entry.changes or {}
        if "address" in changes:
            changes["address"] = ["(not kept)", "(not kept)"]
        entry.changes = changes
        entry.changes_text = ""
        entry.save(update_fields=["changes", "changes_text"])


class Migration(migrations.Migration):
    dependencies = [
        ("patients", "0009_inbound_payload_encrypted"),
        ("auditlog", "0017_add_actor_email"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="contact", name="contact_unique_per_patient"),
        migrations.RemoveIndex(model_name="contact", name="contact_address_idx"),
        migrations.AddField(
            model_name="contact",
            name="address_hash",
            field=patients.fields.BlindIndexField(default="", of=("channel", "address")),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="contact",
            name="address",
            field=patients.fields.EncryptedTextField(max_length=255),
        ),
        migrations.RunPython(hash_and_encrypt, migrations.RunPython.noop),
        migrations.RunPython(forget_addresses_in_audit_trail, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="contact",
            constraint=models.UniqueConstraint(
                fields=("patient", "channel", "address_hash"), name="contact_unique_per_patient"
            ),
        ),
        migrations.AddIndex(
            model_name="contact",
            index=models.Index(fields=["channel", "address_hash"], name="contact_address_idx"),
        ),
    ]
