"""Row-level security on attachments (scheduling.0016), like their messages' deliveries:
a care-team request sees and writes only the attachments of its clinics' messages. A
migration of its own: 0001 runs before the table exists on a new database."""

from django.conf import settings
from django.db import migrations

TABLE = "scheduling_attachment"
ROWS = "message_id IN (SELECT id FROM scheduling_scheduledmessage)"


def build_wall(apps, schema_editor) -> None:
    quote = schema_editor.connection.ops.quote_name
    role = quote(settings.TENANT_WALL_ROLE)
    schema_editor.execute(f"ALTER TABLE {quote(TABLE)} ENABLE ROW LEVEL SECURITY")
    schema_editor.execute(
        f"CREATE POLICY tenant_wall ON {quote(TABLE)} TO {role} USING ({ROWS}) WITH CHECK ({ROWS})"
    )


def take_down_wall(apps, schema_editor) -> None:
    quote = schema_editor.connection.ops.quote_name
    schema_editor.execute(f"ALTER TABLE {quote(TABLE)} DISABLE ROW LEVEL SECURITY")
    schema_editor.execute(f"DROP POLICY IF EXISTS tenant_wall ON {quote(TABLE)}")


class Migration(migrations.Migration):
    dependencies = [
        ("care_team", "0002_provider_preference"),
        ("scheduling", "0016_attachments"),
    ]

    operations = [migrations.RunPython(build_wall, take_down_wall)]
