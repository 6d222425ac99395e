"""MessageTemplate moves from channels_app to scheduling, with its rows.

The model's state moves here (and leaves channels_app in its 0004); the table is renamed,
not copied, so every row, id and constraint stays. The content type is renamed too, so
the audit trail's entries and the permissions granted on templates follow the model.
"""

import django.db.models.deletion
from django.db import migrations, models


def rename_content_type(apps, schema_editor, old="channels_app", new="scheduling"):
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(app_label=old, model="messagetemplate").update(app_label=new)


def restore_content_type(apps, schema_editor):
    rename_content_type(apps, schema_editor, old="scheduling", new="channels_app")


class Migration(migrations.Migration):
    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("channels_app", "0003_message_templates"),
        ("patients", "0005_bot"),
        ("scheduling", "0008_drop_indexes_covered_by_composite_ones"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    "ALTER TABLE channels_app_messagetemplate RENAME TO scheduling_messagetemplate",
                    "ALTER TABLE scheduling_messagetemplate RENAME TO channels_app_messagetemplate",
                )
            ],
            state_operations=[
                migrations.CreateModel(
                    name="MessageTemplate",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True,
                                                   serialize=False, verbose_name="ID")),
                        ("key", models.SlugField(help_text="e.g. medication_reminder",
                                                 max_length=64)),
                        ("language", models.CharField(help_text="e.g. en, de, pt-br",
                                                      max_length=16)),
                        ("body", models.TextField(help_text="Text with {name}-style parameters.")),
                        ("format", models.CharField(choices=[("text", "Plain text"),
                                                             ("html", "HTML")],
                                                    default="text", max_length=8)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                        ("organization", models.ForeignKey(
                            blank=True, help_text="Empty: a global default.", null=True,
                            on_delete=django.db.models.deletion.CASCADE,
                            related_name="templates", to="patients.organization")),
                    ],
                    options={
                        "ordering": ["key", "language"],
                        "constraints": [models.UniqueConstraint(
                            fields=("organization", "key", "language"),
                            name="template_unique_per_org", nulls_distinct=False)],
                    },
                ),
            ],
        ),
        migrations.RunPython(rename_content_type, restore_content_type),
    ]
