"""Row-level security on the tenant tables for the role care-team requests take
(patients/tenant_wall.py). The role is created if missing (it cannot log in) and granted
to the user running migrations, who may then take it."""

from django.conf import settings
from django.db import migrations

from patients.tenant_wall import (
    TABLES,
    TEMPLATES_READ,
    TEMPLATES_TABLE,
    TEMPLATES_WRITE,
)


def build_wall(apps, schema_editor) -> None:
    quote = schema_editor.connection.ops.quote_name
    role = quote(settings.TENANT_WALL_ROLE)
    literal = settings.TENANT_WALL_ROLE.replace("'", "''")
    statements = [
        f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{literal}') "
        f"THEN CREATE ROLE {role} NOLOGIN; END IF; END $$",
        f"GRANT {role} TO CURRENT_USER",
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
        # Tables added by later migrations are open to the role too; the test of the
        # wall fails when one of them holds a clinic's rows and has no policy.
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {role}",
    ]
    for table, rows in TABLES.items():
        statements += [
            f"ALTER TABLE {quote(table)} ENABLE ROW LEVEL SECURITY",
            f"CREATE POLICY tenant_wall ON {quote(table)} TO {role} USING ({rows}) "
            f"WITH CHECK ({rows})",
        ]
    table = quote(TEMPLATES_TABLE)
    statements += [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"CREATE POLICY tenant_wall_read ON {table} FOR SELECT TO {role} USING ({TEMPLATES_READ})",
        f"CREATE POLICY tenant_wall_insert ON {table} FOR INSERT TO {role} "
        f"WITH CHECK ({TEMPLATES_WRITE})",
        f"CREATE POLICY tenant_wall_update ON {table} FOR UPDATE TO {role} "
        f"USING ({TEMPLATES_WRITE}) WITH CHECK ({TEMPLATES_WRITE})",
        f"CREATE POLICY tenant_wall_delete ON {table} FOR DELETE TO {role} "
        f"USING ({TEMPLATES_WRITE})",
    ]
    for statement in statements:
        schema_editor.execute(statement)


def take_down_wall(apps, schema_editor) -> None:
    quote = schema_editor.connection.ops.quote_name
    for table in [*TABLES, TEMPLATES_TABLE]:
        schema_editor.execute(f"ALTER TABLE {quote(table)} DISABLE ROW LEVEL SECURITY")
        schema_editor.execute(
            f"DROP POLICY IF EXISTS tenant_wall ON {quote(table)}"
        )
    for name in ("read", "insert", "update", "delete"):
        schema_editor.execute(f"DROP POLICY IF EXISTS tenant_wall_{name} ON {quote(TEMPLATES_TABLE)}")


class Migration(migrations.Migration):
    dependencies = [
        ("patients", "0010_contact_address_encrypted"),
        ("scheduling", "0015_content_encrypted"),
        ("channels_app", "0005_inbox_body_encrypted"),
        ("outreach", "0002_follow_up_states_for_existing_patients"),
    ]

    operations = [migrations.RunPython(build_wall, take_down_wall)]
