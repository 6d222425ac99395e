"""PostgreSQL row-level security, the second wall between clinics (patients/tenant_wall.py):
raw SQL under another clinic's setting sees nothing, writes into another clinic are
refused, and a surface that forgot its filter still shows only the user's clinic."""

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission, User
from django.db import DatabaseError, connection, transaction
from rest_framework.test import APIClient

from channels_app.models import InboxMessage
from patients.access import ORGANIZATION_PATH
from patients.api_tokens import api_token_issue
from patients.models import Membership, Organization, Role
from patients.tenant_wall import TABLES, TEMPLATES_TABLE, wall_down, wall_up
from scheduling.models import Delivery, MessageTemplate
from scheduling.services import message_schedule
from tests.conftest import from_now


@pytest.fixture
def two_clinics(organization, make_patient):
    other = Organization.objects.create(name="Clinic B", slug="clinic-b")
    rows = {}
    for clinic in (organization, other):
        patient = make_patient(org=clinic)
        message = message_schedule(patient=patient, content="hi", starts_at=from_now(600))
        Delivery.objects.create(
            message=message,
            channel="telegram",
            occurrence_at=from_now(600),
            next_attempt_at=from_now(600),
            expires_at=from_now(4200),
        )
        InboxMessage.objects.create(patient=patient, body="hi")
        rows[clinic.slug] = {"org": clinic, "patient": patient, "message": message}
    return rows


def ids(table: str) -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {table}")  # noqa: S608 - our table names
        return {row[0] for row in cursor.fetchall()}


def test_raw_sql_with_another_clinics_setting_returns_nothing(two_clinics):
    filled = ["patients_patient", "patients_contact", "scheduling_scheduledmessage",
              "scheduling_delivery", "channels_app_inboxmessage"]  # fmt: skip
    assert all(ids(table) for table in filled), "rows to hide"
    lonely = Organization.objects.create(name="Clinic C", slug="clinic-c")

    wall_up([lonely.pk])
    try:
        seen = {table: ids(table) for table in TABLES if table != "patients_organization"}
        assert ids("patients_organization") == {lonely.pk}
    finally:
        wall_down()
    assert seen == {table: set() for table in seen}


def test_each_clinic_sees_only_its_own_rows(two_clinics):
    a, b = two_clinics["clinic-a"], two_clinics["clinic-b"]
    wall_up([a["org"].pk])
    try:
        assert ids("patients_patient") == {a["patient"].pk}
        assert ids("scheduling_scheduledmessage") == {a["message"].pk}
        assert len(ids("scheduling_delivery")) == 1
    finally:
        wall_down()
    assert ids("patients_patient") == {a["patient"].pk, b["patient"].pk}  # wall down again


def test_writes_into_another_clinic_are_refused(two_clinics):
    a, b = two_clinics["clinic-a"], two_clinics["clinic-b"]
    wall_up([a["org"].pk])
    try:
        with connection.cursor() as cursor:
            sql = "UPDATE patients_patient SET name = 'x' WHERE id = %s"
            cursor.execute(sql, [b["patient"].pk])
            assert cursor.rowcount == 0
        with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
            MessageTemplate.objects.create(key="x", language="en", body="global")
        with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
            InboxMessage.objects.create(patient=b["patient"], body="into B")
    finally:
        wall_down()


def test_every_model_a_clinic_owns_has_a_policy(db):
    def owned(model) -> bool:
        names = {field.name for field in model._meta.concrete_fields}
        return model._meta.model_name in ORGANIZATION_PATH or bool(
            names & {"patient", "organization"}
        )

    tables = {model._meta.db_table for model in apps.get_models() if owned(model)}
    assert tables <= {*TABLES, TEMPLATES_TABLE}
    with connection.cursor() as cursor:
        cursor.execute("SELECT relname FROM pg_class WHERE relrowsecurity")
        secured = {row[0] for row in cursor.fetchall()}
    assert tables <= secured


def test_an_api_that_forgot_its_filter_still_shows_only_the_users_clinic(two_clinics, monkeypatch):
    a = two_clinics["clinic-a"]
    user = User.objects.create_user("nurse")
    Membership.objects.create(user=user, organization=a["org"], role=Role.ADMIN)
    monkeypatch.setattr("care_team.api.views.scoped", lambda queryset, user: queryset)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token_issue(user)}")

    listed = api.get("/api/scheduler/patients/").json()["results"]
    assert [row["id"] for row in listed] == [a["patient"].pk]
    with connection.cursor() as cursor:  # the request left the wall behind it
        cursor.execute("SELECT current_user")
        assert cursor.fetchone()[0] != "companion_tenant"


def test_an_admin_page_that_forgot_its_filter_still_shows_only_the_users_clinic(
    two_clinics, monkeypatch, client
):
    a, b = two_clinics["clinic-a"], two_clinics["clinic-b"]
    user = User.objects.create_user("nurse", is_staff=True, is_superuser=False)
    user.user_permissions.add(Permission.objects.get(codename="view_patient"))
    Membership.objects.create(user=user, organization=a["org"], role=Role.ADMIN)
    monkeypatch.setattr("care_team.admin.scoping.scoped", lambda queryset, user: queryset)
    client.force_login(user)

    page = client.get("/admin/patients/patient/").content.decode()
    assert a["patient"].name in page
    assert b["patient"].name not in page


# Behind PgBouncer in transaction mode (DATABASE_POOLER=transaction) consecutive
# transactions of one client may run on different server sessions, and a server session
# goes from client to client: the wall must live and die with one transaction.


def session_state() -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user, current_setting('app.organization_ids', true)")
        user, listed = cursor.fetchone()
    return user, listed or ""


@pytest.mark.django_db(transaction=True)
def test_behind_a_transaction_pooler_the_wall_ends_with_its_transaction(two_clinics, settings):
    settings.DATABASE_POOLER = "transaction"
    a, b = two_clinics["clinic-a"], two_clinics["clinic-b"]
    owner = session_state()[0]

    with transaction.atomic():
        wall_up([a["org"].pk])
        assert ids("patients_patient") == {a["patient"].pk}
        assert session_state() == (settings.TENANT_WALL_ROLE, str(a["org"].pk))
    # Committed: what the next transaction on this server session meets, whoever runs it.
    assert session_state() == (owner, "")
    assert ids("patients_patient") == {a["patient"].pk, b["patient"].pk}


@pytest.mark.django_db(transaction=True)
def test_behind_a_transaction_pooler_the_wall_is_refused_outside_a_transaction(settings):
    settings.DATABASE_POOLER = "transaction"
    with pytest.raises(RuntimeError, match="needs a transaction"):
        wall_up([1])
    assert session_state()[1] == ""


@pytest.mark.django_db(transaction=True)
def test_behind_a_transaction_pooler_requests_are_walled_and_leave_nothing_behind(
    two_clinics, monkeypatch, client, settings
):
    settings.DATABASE_POOLER = "transaction"
    a, b = two_clinics["clinic-a"], two_clinics["clinic-b"]
    owner = session_state()[0]
    user = User.objects.create_user("nurse", is_staff=True, is_superuser=False)
    user.user_permissions.add(Permission.objects.get(codename="view_patient"))
    Membership.objects.create(user=user, organization=a["org"], role=Role.ADMIN)
    monkeypatch.setattr("care_team.admin.scoping.scoped", lambda queryset, user: queryset)
    monkeypatch.setattr("care_team.api.views.scoped", lambda queryset, user: queryset)
    client.force_login(user)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token_issue(user)}")

    page = client.get("/admin/patients/patient/").content.decode()
    assert a["patient"].name in page
    assert b["patient"].name not in page
    assert session_state() == (owner, "")
    # A token is read after the middleware, by DRF: still inside the request's transaction.
    listed = api.get("/api/scheduler/patients/").json()["results"]
    assert [row["id"] for row in listed] == [a["patient"].pk]
    assert session_state() == (owner, "")
