"""MessageTemplate now belongs to scheduling (its 0009 moved the table and its rows)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("channels_app", "0003_message_templates"),
        ("scheduling", "0009_message_template_from_channels_app"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="MessageTemplate")],
        ),
    ]
