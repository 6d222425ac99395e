"""A message's content is encrypted at rest (patients/encryption.py). Rows written before
stay readable as they are until `manage.py rotate_encryption_key` encrypts them; the audit
trail forgets the texts it kept (it now records only that the content changed)."""

from django.db import migrations

import patients.fields


def forget_content_in_audit_trail(apps, schema_editor) -> None:
    LogEntry = apps.get_model("auditlog", "LogEntry")
    ContentType = apps.get_model("contenttypes", "ContentType")
    kind = ContentType.objects.filter(app_label="scheduling", model="scheduledmessage").first()
    if kind is None:
        return
    entries = LogEntry.objects.filter(content_type=kind, changes__has_key="content")
    for entry in entries.iterator(chunk_size=1000):
        entry.changes["content"] = ["(not kept)", "(not kept)"]
        entry.changes_text = ""
        entry.save(update_fields=["changes", "changes_text"])


class Migration(migrations.Migration):
    dependencies = [
        ("scheduling", "0014_alter_scheduledmessage_kind"),
        ("auditlog", "0017_add_actor_email"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AlterField(
            model_name="scheduledmessage",
            name="content",
            field=patients.fields.EncryptedTextField(),
        ),
        migrations.RunPython(forget_content_in_audit_trail, migrations.RunPython.noop),
    ]
