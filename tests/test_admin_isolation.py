"""A care team never sees or touches another organization's patients in the admin."""

import pytest
from auditlog.models import LogEntry
from django.contrib.auth.models import Group, Permission, User
from django.urls import reverse

from patients.models import Membership, Organization
from scheduling.dispatch import dispatch_due
from scheduling.models import Delivery, MessageStatus
from scheduling.services import message_schedule
from tests.conftest import ago, from_now


@pytest.fixture
def clinics(make_patient, organization):
    """Clinic A (the `organization` fixture) and clinic B, a message and a provider each."""
    clinic_b = Organization.objects.create(name="Clinic B", slug="clinic-b")
    group = Group.objects.create(name="providers")
    group.permissions.set(Permission.objects.filter(
        content_type__app_label__in=["patients", "scheduling", "channels_app"]))  # fmt: skip
    found = {}
    for label, org in (("a", organization), ("b", clinic_b)):
        user = User.objects.create_user(f"provider-{label}", is_staff=True)
        user.groups.add(group)
        Membership.objects.create(user=user, organization=org)
        patient = make_patient(org=org)
        message = message_schedule(patient=patient, content=f"for {label}", starts_at=from_now(600))
        found[label] = {"user": user, "org": org, "patient": patient, "message": message}
    return found


def as_provider(client, clinic):
    client.force_login(clinic["user"])
    return client


@pytest.mark.parametrize(
    "url_name", ["scheduling_scheduledmessage", "patients_patient", "patients_organization"]
)
def test_lists_show_only_the_users_organization(client, clinics, url_name):
    page = as_provider(client, clinics["b"]).get(reverse(f"admin:{url_name}_changelist"))
    shown = page.content.decode()
    assert page.status_code == 200
    assert "Clinic A" not in shown
    assert clinics["a"]["patient"].name not in shown
    assert f">{clinics['a']['message'].pk}<" not in shown


@pytest.mark.parametrize(
    ("url_name", "key"),
    [("scheduling_scheduledmessage", "message"), ("patients_patient", "patient"),
     ("patients_organization", "org")],
)  # fmt: skip
def test_another_organizations_object_is_not_found_not_forbidden(client, clinics, url_name, key):
    target = clinics["a"][key]
    response = as_provider(client, clinics["b"]).get(
        reverse(f"admin:{url_name}_change", args=[target.pk]), follow=True
    )
    # The admin answers a missing object with a redirect and "doesn't exist".
    assert "doesn’t exist" in response.content.decode()
    assert str(target) not in response.content.decode().split("doesn’t exist")[1]


def test_an_action_on_another_organizations_message_does_nothing(client, clinics):
    message = clinics["a"]["message"]
    as_provider(client, clinics["b"]).post(
        reverse("admin:scheduling_scheduledmessage_changelist"),
        {"action": "cancel_messages", "_selected_action": [message.pk]},
    )
    message.refresh_from_db()
    assert message.status == MessageStatus.ACTIVE


def test_a_message_cannot_be_created_for_another_organizations_patient(client, clinics):
    response = as_provider(client, clinics["b"]).post(
        reverse("admin:scheduling_scheduledmessage_add"),
        {"patient": clinics["a"]["patient"].pk, "channel": "telegram", "content": "x",
         "format": "text", "priority": 3, "starts_at_0": "2030-01-01",
         "starts_at_1": "09:00:00", "delivery_window_seconds": 3600, "metadata": "{}",
         "deliveries-TOTAL_FORMS": 0, "deliveries-INITIAL_FORMS": 0},
    )  # fmt: skip
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert clinics["a"]["patient"].scheduled_messages.count() == 1


def test_deliveries_of_another_organization_are_hidden(client, clinics, make_patient):
    message_schedule(patient=clinics["a"]["patient"], content="due", starts_at=ago(1))
    dispatch_due()
    delivery = Delivery.objects.get()
    response = as_provider(client, clinics["b"]).get(
        reverse("admin:scheduling_delivery_change", args=[delivery.pk]), follow=True
    )
    assert "doesn’t exist" in response.content.decode()


def test_changes_and_actions_are_in_the_audit_trail_with_who_did_them(client, clinics):
    message = clinics["a"]["message"]
    provider = clinics["a"]["user"]
    as_provider(client, clinics["a"]).post(
        reverse("admin:scheduling_scheduledmessage_changelist"),
        {"action": "cancel_messages", "_selected_action": [message.pk]},
    )
    entries = LogEntry.objects.get_for_object(message)
    assert entries.filter(action=LogEntry.Action.CREATE).exists()
    cancel = entries.get(additional_data__action="cancel")
    assert cancel.actor == provider
    page = client.get(reverse("admin:scheduling_scheduledmessage_change", args=[message.pk]))
    assert "cancel" in page.content.decode() and "provider-a" in page.content.decode()
