"""PostgreSQL row-level security: a second wall between clinics, under the querysets.

Every surface scopes its querysets to the user's organizations (patients/access.py);
one forgotten filter would show another clinic's patients. So while a care-team user's
request runs, its database session also takes a role of its own (TENANT_WALL_ROLE,
not the tables' owner) and names the user's organizations in a setting; policies on the
tenant tables (care_team/migrations/0001_tenant_wall.py) let that role see and write
only rows of those organizations, whatever SQL the code sends.

Workers, Beat, the bot and the anonymous endpoints (webhooks, the patient's inbox link,
health) run as the connecting user, the tables' owner, which the policies do not bind:
they act for every clinic by design, and take no query from a care team.

Behind a pooler in transaction mode (DATABASE_POOLER=transaction) a session setting would
stay on the server session and be met by whichever client the pooler gives it to next,
and this client's next statement could run on a session without it. There the settings
are the transaction's own (set_config's is_local, SET LOCAL), every request runs in one
transaction (care_team/tenancy.py), and raising the wall outside one is refused.
"""

from django.conf import settings
from django.db import DatabaseError, connection

# The policies: a table, and the SQL that says which organization a row belongs to. A
# child table names its parent's rows, which the parent's own policy already narrows.
IN_ORGANIZATIONS = (
    "coalesce(current_setting('app.all_organizations', true), '') = 'on' OR {column} = ANY ("
    "string_to_array(nullif(current_setting('app.organization_ids', true), ''), ',')::bigint[])"
)
PATIENT_ROWS = "patient_id IN (SELECT id FROM patients_patient)"
TABLES = {
    "patients_organization": IN_ORGANIZATIONS.format(column="id"),
    "patients_membership": IN_ORGANIZATIONS.format(column="organization_id"),
    "patients_patient": IN_ORGANIZATIONS.format(column="organization_id"),
    "patients_contact": PATIENT_ROWS,
    "patients_linktoken": PATIENT_ROWS,
    "patients_inboxlink": PATIENT_ROWS,
    "scheduling_scheduledmessage": IN_ORGANIZATIONS.format(column="organization_id"),
    "scheduling_delivery": "message_id IN (SELECT id FROM scheduling_scheduledmessage)",
    "scheduling_deliveryattempt": "delivery_id IN (SELECT id FROM scheduling_delivery)",
    "scheduling_acknowledgement": "delivery_id IN (SELECT id FROM scheduling_delivery)",
    "scheduling_careteamalert": IN_ORGANIZATIONS.format(column="organization_id"),
    "channels_app_inboxmessage": PATIENT_ROWS,
    "outreach_companionpersona": IN_ORGANIZATIONS.format(column="organization_id"),
    "outreach_checkinplan": PATIENT_ROWS,
    "outreach_checkin": PATIENT_ROWS,
    "outreach_followupstate": PATIENT_ROWS,
    "outreach_followup": PATIENT_ROWS,
}
# Global templates (no organization) are read by every clinic and written by operators.
TEMPLATES_TABLE = "scheduling_messagetemplate"
TEMPLATES_READ = "organization_id IS NULL OR " + IN_ORGANIZATIONS.format(column="organization_id")
TEMPLATES_WRITE = IN_ORGANIZATIONS.format(column="organization_id")


def wall_up(organization_ids: list[int] | None) -> None:
    """From now on this connection sees only those organizations (None: all of them)."""
    if not settings.TENANT_WALL_ENABLED:
        return
    local = _transaction_local()
    if local and not connection.in_atomic_block:
        # Outside a transaction the setting would end with its own statement: fail closed.
        raise RuntimeError("DATABASE_POOLER=transaction: the tenant wall needs a transaction")
    every = "on" if organization_ids is None else "off"
    listed = ",".join(str(int(pk)) for pk in organization_ids or [])
    # One round trip: set_config('role', ...) is SET ROLE.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('role', %s, %s), "
            "set_config('app.all_organizations', %s, %s), "
            "set_config('app.organization_ids', %s, %s)",
            [settings.TENANT_WALL_ROLE, local, every, local, listed, local],
        )
    connection.tenant_wall_up = True


def _transaction_local() -> bool:
    return settings.DATABASE_POOLER == "transaction"


def wall_is_up() -> bool:
    return getattr(connection, "tenant_wall_up", False)


def wall_down() -> None:
    """Back to the connecting user. Called after every request; a connection whose
    transaction broke cannot run it, and Django closes such a connection anyway."""
    if not wall_is_up():
        return  # never raised on this connection: nothing to take down, no query
    connection.tenant_wall_up = False
    if connection.connection is None:
        return  # closed since: a new connection starts as the plain user
    try:
        with connection.cursor() as cursor:
            local = _transaction_local()
            cursor.execute(
                "SELECT set_config('role', 'none', %s), "
                "set_config('app.all_organizations', '', %s), "
                "set_config('app.organization_ids', '', %s)",
                [local, local, local],
            )
    except DatabaseError:
        connection.close_if_unusable_or_obsolete()
