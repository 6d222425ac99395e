"""Drops the single-column indexes Django made for three foreign keys; composite indexes
starting with the same column serve the same look-ups. Only the indexes go: changing
db_index through AlterField would drop and re-check each foreign key on the whole table."""

import django.db.models.deletion
from django.db import migrations, models

# (table, column, the index Django named for it)
INDEXES = [
    ("scheduling_delivery", "message_id", "scheduling_delivery_message_id_9346ec0a"),
    ("scheduling_scheduledmessage", "organization_id",
     "scheduling_scheduledmessage_organization_id_fb249fd1"),
    ("scheduling_scheduledmessage", "patient_id", "scheduling_scheduledmessage_patient_id_d69e221f"),
]  # fmt: skip


class Migration(migrations.Migration):
    dependencies = [
        ("patients", "0005_bot"),
        ("scheduling", "0007_acknowledgements"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{index}"',
                    reverse_sql=f'CREATE INDEX IF NOT EXISTS "{index}" ON "{table}" ("{column}")',
                )
                for table, column, index in INDEXES
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="delivery",
                    name="message",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="deliveries",
                        to="scheduling.scheduledmessage",
                    ),
                ),
                migrations.AlterField(
                    model_name="scheduledmessage",
                    name="organization",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="patients.organization",
                    ),
                ),
                migrations.AlterField(
                    model_name="scheduledmessage",
                    name="patient",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="scheduled_messages",
                        to="patients.patient",
                    ),
                ),
            ],
        ),
    ]
