"""The admin's access rules (docs/security.md, items 1, 2, 4 and 14): lookups never name
another clinic's objects, global templates are the operators', roles decide who manages
memberships, who changes a clinic's settings, who deletes and who cancels, and a page
never renders an unbounded list of rows."""

import re
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission, User
from django.forms import ModelChoiceField
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from patients.models import Channel, Contact, Membership, Organization, Patient, Role
from patients.provisioning import provider_create
from scheduling.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    MessageStatus,
    MessageTemplate,
    ScheduledMessage,
)
from scheduling.services import message_schedule
from tests.conftest import from_now
from tests.test_admin_and_pages import admin_add_form
from tests.test_api import API, token_client

STRANGER = "Zelda Elsewhere"


@pytest.fixture
def clinics(organization, make_patient):
    """Our clinic (the `organization` fixture) with a staff member, an admin and a patient;
    another clinic with a patient and a message we must never see."""
    elsewhere = Organization.objects.create(name="Clinic Elsewhere", slug="clinic-elsewhere")
    stranger = make_patient(org=elsewhere)
    stranger.name = STRANGER
    stranger.save()
    ours = make_patient()
    ours.name = "Olive Ours"
    ours.save()
    staff = provider_create(organization_slug=organization.slug, username="sam-staff")
    head = provider_create(organization_slug=organization.slug, username="ada-admin", admin=True)
    return SimpleNamespace(
        ours=organization,
        elsewhere=elsewhere,
        patient=ours,
        stranger=stranger,
        stranger_message=message_schedule(
            patient=stranger, content="theirs", starts_at=from_now(600)
        ),
        staff=staff.user,
        head=head.user,
    )


def logged_in(client, user):
    client.force_login(user)
    return client


# --- 1. Raw-id and autocomplete lookups -------------------------------------------------


@pytest.mark.parametrize("model", ["scheduling/scheduledmessage", "patients/contact"])
def test_a_raw_id_lookup_names_only_the_users_own_patients(client, clinics, model):
    url = f"/admin/{model}/add/"
    as_staff = logged_in(client, clinics.staff)

    theirs = as_staff.get(url, {"patient": clinics.stranger.pk})
    ours = as_staff.get(url, {"patient": clinics.patient.pk})

    assert theirs.status_code == 200
    assert STRANGER not in theirs.content.decode()
    assert "Olive Ours" in ours.content.decode()  # the label itself still works


def test_a_message_posted_for_another_clinics_patient_is_refused_without_naming_them(
    client, clinics
):
    response = logged_in(client, clinics.staff).post(
        reverse("admin:scheduling_scheduledmessage_add"), admin_add_form(clinics.stranger)
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "Select a valid choice" in page
    assert STRANGER not in page
    assert clinics.stranger.scheduled_messages.count() == 1


def test_a_contact_posted_for_another_clinics_patient_is_refused_without_naming_them(
    client, clinics
):
    response = logged_in(client, clinics.staff).post(
        reverse("admin:patients_contact_add"),
        {
            "patient": clinics.stranger.pk,
            "channel": "telegram",
            "address": "424242",
            "blocked_reason": "",
        },
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "Select a valid choice" in page
    assert STRANGER not in page
    assert not Contact.objects.at("telegram", "424242").exists()


def test_no_admin_form_field_names_another_clinics_object(clinics):
    """Every foreign key of every admin form and inline a care-team user can open, shown
    with another clinic's object as its value (as ?field=<id> or a refused POST does)."""
    group = Group.objects.create(name="everything a clinic may be given")
    group.permissions.set(
        Permission.objects.filter(
            content_type__app_label__in=["patients", "scheduling", "channels_app", "outreach"]
        )
    )
    clinics.staff.groups.add(group)
    request = RequestFactory().get("/admin/")
    request.user = User.objects.get(pk=clinics.staff.pk)  # no cached permissions
    now = timezone.now()
    their_delivery = Delivery.objects.create(
        message=clinics.stranger_message,
        occurrence_at=now,
        channel="telegram",
        next_attempt_at=now,
        expires_at=now,
    )
    theirs = {
        Delivery: their_delivery,
        Patient: clinics.stranger,
        Organization: clinics.elsewhere,
        ScheduledMessage: clinics.stranger_message,
        Contact: clinics.stranger.contacts.get(),
    }
    checked = []
    for model_admin in admin.site._registry.values():
        if not (
            model_admin.has_view_or_change_permission(request)
            or model_admin.has_add_permission(request)
        ):
            continue
        forms = [model_admin.get_form(request)]
        forms += [
            inline.get_formset(request).form for inline in model_admin.get_inline_instances(request)
        ]
        for form_class in forms:
            for name, field in form_class.base_fields.items():
                if not isinstance(field, ModelChoiceField):
                    continue
                target = theirs.get(field.queryset.model)
                assert target is not None, f"{form_class.__name__}.{name}: add a case"
                shown = str(form_class(initial={name: target.pk})[name])
                assert str(target) not in shown, f"{form_class.__name__}.{name}"
                checked.append(f"{form_class._meta.model.__name__}.{name}")
    assert {"ScheduledMessage.patient", "Contact.patient", "MessageTemplate.organization"} <= set(
        checked
    )


def test_autocomplete_offers_only_the_users_own_patients(client, clinics):
    response = logged_in(client, clinics.staff).get(
        "/admin/autocomplete/",
        {"app_label": "scheduling", "model_name": "scheduledmessage", "field_name": "patient"},
    )
    assert response.status_code == 200
    assert [row["text"] for row in response.json()["results"]] == ["Olive Ours"]


# --- 2. Global templates ----------------------------------------------------------------


def template_form(organization, **overrides) -> dict:
    data = {
        "organization": organization.pk if organization else "",
        "key": "check_in",
        "language": "en",
        "body": "Hello {name}, everyone",
        "format": "text",
    }
    return {**data, **overrides}


@pytest.mark.parametrize("who", ["staff", "head"])
def test_a_member_cannot_make_a_global_template_in_the_admin(client, clinics, who):
    response = logged_in(client, getattr(clinics, who)).post(
        reverse("admin:scheduling_messagetemplate_add"), template_form(None)
    )
    assert response.status_code == 200
    assert "This field is required" in response.content.decode()
    assert not MessageTemplate.objects.filter(organization__isnull=True).exists()


def test_a_member_writes_templates_of_their_own_clinic_only(client, clinics):
    as_staff = logged_in(client, clinics.staff)
    url = reverse("admin:scheduling_messagetemplate_add")
    assert as_staff.post(url, template_form(clinics.elsewhere)).status_code == 200
    assert as_staff.post(url, template_form(clinics.ours)).status_code == 302
    assert MessageTemplate.objects.get().organization == clinics.ours


def test_global_templates_are_read_only_for_members_in_the_admin(client, clinics):
    global_row = MessageTemplate.objects.create(key="check_in", language="en", body="Hi {name}")
    as_head = logged_in(client, clinics.head)
    change = reverse("admin:scheduling_messagetemplate_change", args=[global_row.pk])
    delete = reverse("admin:scheduling_messagetemplate_delete", args=[global_row.pk])

    page = as_head.get(change)
    posted = as_head.post(change, template_form(None, body="Rewritten for every clinic"))
    deleted = as_head.post(delete, {"post": "yes"})

    assert page.status_code == 200 and "Hi {name}" in page.content.decode()
    assert 'name="_save"' not in page.content.decode()  # shown, not editable
    assert (posted.status_code, deleted.status_code) == (403, 403)
    global_row.refresh_from_db()
    assert global_row.body == "Hi {name}"


def test_a_members_template_never_moves_and_keeps_one_key_per_clinic(client, clinics):
    Membership.objects.create(user=clinics.staff, organization=clinics.elsewhere)
    taken = MessageTemplate.objects.create(
        organization=clinics.ours, key="taken", language="en", body="Hi"
    )
    mine = MessageTemplate.objects.create(
        organization=clinics.ours, key="mine", language="en", body="Hi"
    )
    as_staff = logged_in(client, clinics.staff)
    url = reverse("admin:scheduling_messagetemplate_change", args=[mine.pk])

    moved = as_staff.post(url, template_form(clinics.elsewhere, key="mine"))
    clash = as_staff.post(url, template_form(clinics.ours, key=taken.key))

    assert moved.status_code == 302
    mine.refresh_from_db()
    assert mine.organization == clinics.ours  # as in the API, a template never moves
    assert clash.status_code == 200 and "already exists" in clash.content.decode()


def test_an_operator_writes_global_templates_in_the_admin(admin_client, db):
    response = admin_client.post(
        reverse("admin:scheduling_messagetemplate_add"), template_form(None)
    )
    assert response.status_code == 302
    assert MessageTemplate.objects.get().organization is None


def test_the_api_never_makes_or_changes_a_global_template_for_a_member(clinics):
    global_row = MessageTemplate.objects.create(key="check_in", language="en", body="Hi {name}")
    api = token_client(
        provider_create(
            organization_slug=clinics.ours.slug, username="ada-admin", new_token=True
        ).token
    )
    created = api.post(
        f"{API}/templates/",
        {"organization": None, "key": "follow_up", "language": "en", "body": "Hi"},
        format="json",
    )
    changed = api.patch(f"{API}/templates/{global_row.pk}/", {"body": "Yo"}, format="json")
    assert created.status_code == 201 and created.json()["organization"] == "clinic-a"
    assert changed.status_code == 403
    assert list(MessageTemplate.objects.filter(organization__isnull=True)) == [global_row]


# --- 4. Roles: memberships, deleting, deactivating --------------------------------------


@pytest.mark.parametrize("who", ["staff", "head"])
def test_memberships_are_for_operators_only(client, clinics, who):
    user = getattr(clinics, who)
    mine = Membership.objects.get(user=user)
    outsider = User.objects.create_user("outsider-with-a-telling-name", is_staff=True)
    as_member = logged_in(client, user)

    listing = as_member.get(reverse("admin:patients_membership_changelist"))
    lookup = as_member.get(reverse("admin:patients_membership_add"), {"user": outsider.pk})
    added = as_member.post(
        reverse("admin:patients_membership_add"),
        {"user": outsider.pk, "organization": clinics.ours.pk, "role": "admin"},
    )
    promoted = as_member.post(
        reverse("admin:patients_membership_change", args=[mine.pk]),
        {"user": user.pk, "organization": clinics.ours.pk, "role": "admin"},
    )

    assert [r.status_code for r in (listing, lookup, added, promoted)] == [403] * 4
    assert "outsider-with-a-telling-name" not in lookup.content.decode()
    assert not Membership.objects.filter(user=outsider).exists()
    mine.refresh_from_db()
    assert mine.role == (Role.ADMIN if who == "head" else Role.STAFF)


def test_an_operator_manages_memberships(admin_client, clinics):
    assert admin_client.get(reverse("admin:patients_membership_changelist")).status_code == 200


def delete_urls(clinics) -> dict:
    template = MessageTemplate.objects.create(
        organization=clinics.ours, key="check_in", language="en", body="Hi {name}"
    )
    targets = {
        "patient": clinics.patient,
        "contact": clinics.patient.contacts.get(),
        "messagetemplate": template,
    }
    app = {"patient": "patients", "contact": "patients", "messagetemplate": "scheduling"}
    return {
        target: reverse(f"admin:{app[name]}_{name}_delete", args=[target.pk])
        for name, target in targets.items()
    }


def test_staff_cannot_delete_patients_contacts_or_templates(client, clinics):
    as_staff = logged_in(client, clinics.staff)
    for target, url in delete_urls(clinics).items():
        assert as_staff.get(url).status_code == 403, url
        assert as_staff.post(url, {"post": "yes"}).status_code == 403, url
        assert type(target).objects.filter(pk=target.pk).exists()


def test_a_clinic_admin_may_delete_them(client, clinics):
    as_head = logged_in(client, clinics.head)
    for target, url in reversed(delete_urls(clinics).items()):  # the patient last
        assert as_head.post(url, {"post": "yes"}).status_code == 302, url
        assert not type(target).objects.filter(pk=target.pk).exists()


def test_staff_see_no_delete_box_for_contacts_on_a_patients_page(client, clinics):
    url = reverse("admin:patients_patient_change", args=[clinics.patient.pk])
    assert "contacts-0-DELETE" not in logged_in(client, clinics.staff).get(url).content.decode()
    assert "contacts-0-DELETE" in logged_in(client, clinics.head).get(url).content.decode()


def actions_offered(client, changelist: str) -> list[str]:
    page = client.get(changelist).content.decode()
    if 'name="action"' not in page:
        return []
    return re.findall(
        r'<option value="(\w+)"', page.split('name="action"')[1].split("</select>")[0]
    )


def patient_actions(client) -> list[str]:
    return actions_offered(client, reverse("admin:patients_patient_changelist"))


def test_patients_are_deactivated_by_clinic_admins_not_deleted_in_bulk(client, clinics):
    message = message_schedule(patient=clinics.patient, content="x", starts_at=from_now(600))
    as_head = logged_in(client, clinics.head)
    assert "delete_selected" not in patient_actions(as_head)

    response = as_head.post(
        reverse("admin:patients_patient_changelist"),
        {"action": "deactivate_patients", "_selected_action": [clinics.patient.pk]},
    )

    assert response.status_code == 302
    clinics.patient.refresh_from_db()
    message.refresh_from_db()
    assert clinics.patient.opted_out_at is not None
    assert message.status == MessageStatus.CANCELLED
    assert f"by user {clinics.head.pk}" in message.status_reason


def test_deactivating_leaves_the_patients_of_clinics_where_the_user_is_staff(client, clinics):
    Membership.objects.create(user=clinics.head, organization=clinics.elsewhere)
    response = logged_in(client, clinics.head).post(
        reverse("admin:patients_patient_changelist"),
        {
            "action": "deactivate_patients",
            "_selected_action": [clinics.patient.pk, clinics.stranger.pk],
        },
        follow=True,
    )
    clinics.patient.refresh_from_db()
    clinics.stranger.refresh_from_db()
    assert clinics.patient.opted_out_at is not None
    assert clinics.stranger.opted_out_at is None
    assert "1 patient(s) left as they were" in response.content.decode()


def test_staff_can_neither_deactivate_nor_bulk_delete_patients(client, clinics):
    as_staff = logged_in(client, clinics.staff)
    offered = patient_actions(as_staff)
    for action in ("deactivate_patients", "delete_selected"):
        assert action not in offered
        as_staff.post(
            reverse("admin:patients_patient_changelist"),
            {"action": action, "_selected_action": [clinics.patient.pk], "post": "yes"},
        )
    clinics.patient.refresh_from_db()
    assert clinics.patient.opted_out_at is None


def message_with_history(clinics) -> list:
    """A message of our clinic, one of its deliveries and that delivery's attempt."""
    message = message_schedule(patient=clinics.patient, content="x", starts_at=from_now(600))
    now = timezone.now()
    delivery = Delivery.objects.create(
        message=message, occurrence_at=now, channel="telegram", next_attempt_at=now, expires_at=now
    )
    attempt = DeliveryAttempt.objects.create(
        delivery=delivery, number=1, started_at=now, outcome="transient"
    )
    return [message, delivery, attempt]


def admin_url(row, view: str, *args) -> str:
    return reverse(f"admin:{row._meta.app_label}_{row._meta.model_name}_{view}", args=args)


@pytest.mark.parametrize("who", ["staff", "head"])
def test_members_cannot_delete_messages_deliveries_or_attempts(client, clinics, who):
    rows = message_with_history(clinics)
    as_member = logged_in(client, getattr(clinics, who))
    for row in rows:
        delete, changelist = admin_url(row, "delete", row.pk), admin_url(row, "changelist")
        assert as_member.get(delete).status_code == 403, delete
        assert as_member.post(delete, {"post": "yes"}).status_code == 403, delete
        assert "delete_selected" not in actions_offered(as_member, changelist), changelist
        as_member.post(
            changelist, {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"}
        )
        page = as_member.get(admin_url(row, "change", row.pk)).content.decode()
        assert 'class="deletelink"' not in page, row
    for row in rows:
        assert type(row).objects.filter(pk=row.pk).exists(), row
    message, delivery, attempt = rows
    for row in (delivery, attempt):  # history: read-only, also for a clinic's admin
        page = as_member.get(admin_url(row, "change", row.pk)).content.decode()
        assert 'name="_save"' not in page, row


def test_an_operator_may_delete_messages_deliveries_and_attempts(admin_client, clinics):
    for row in reversed(message_with_history(clinics)):  # the attempt first
        response = admin_client.post(admin_url(row, "delete", row.pk), {"post": "yes"})
        assert response.status_code == 302, row
        assert not type(row).objects.filter(pk=row.pk).exists(), row


@pytest.mark.parametrize("who", ["staff", "head"])
def test_members_cancel_messages_in_the_admin_as_in_the_api(client, clinics, who):
    user = getattr(clinics, who)
    message = message_schedule(patient=clinics.patient, content="x", starts_at=from_now(600))
    as_member = logged_in(client, user)
    changelist = reverse("admin:scheduling_scheduledmessage_changelist")
    assert "cancel_messages" in actions_offered(as_member, changelist)

    response = as_member.post(
        changelist, {"action": "cancel_messages", "_selected_action": [message.pk]}
    )

    assert response.status_code == 302
    message.refresh_from_db()
    assert message.status == MessageStatus.CANCELLED
    assert message.status_reason == f"cancelled in the admin by user {user.pk}"


def test_a_user_who_may_only_view_messages_cannot_cancel_them(client, clinics):
    viewer = User.objects.create_user("vera-viewer", is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename="view_scheduledmessage"))
    Membership.objects.create(user=viewer, organization=clinics.ours)
    message = message_schedule(patient=clinics.patient, content="x", starts_at=from_now(600))
    as_viewer = logged_in(client, viewer)
    changelist = reverse("admin:scheduling_scheduledmessage_changelist")

    assert "cancel_messages" not in actions_offered(as_viewer, changelist)
    as_viewer.post(changelist, {"action": "cancel_messages", "_selected_action": [message.pk]})

    message.refresh_from_db()
    assert message.status == MessageStatus.ACTIVE


def test_a_clinic_admin_deleting_a_patient_takes_their_history_along(client, clinics):
    """Erasing a patient is the clinic admin's decision (item 4); their messages, deliveries
    and attempts, read-only on their own, go with them."""
    rows = message_with_history(clinics)
    url = reverse("admin:patients_patient_delete", args=[clinics.patient.pk])
    assert logged_in(client, clinics.staff).post(url, {"post": "yes"}).status_code == 403

    response = logged_in(client, clinics.head).post(url, {"post": "yes"})

    assert response.status_code == 302
    assert not Patient.objects.filter(pk=clinics.patient.pk).exists()
    for row in rows:
        assert not type(row).objects.filter(pk=row.pk).exists(), row


def organization_form(organization, **overrides) -> dict:
    data = {
        "name": organization.name,
        "slug": organization.slug,
        "alert_channel": "",
        "alert_address": "",
    }
    return {**data, **overrides}


RENAMED = {
    "name": "Renamed Clinic",
    "slug": "renamed-clinic",
    "alert_channel": "email",
    "alert_address": "me@example.org",
}


def test_staff_see_their_clinics_settings_but_cannot_change_them(client, clinics):
    url = reverse("admin:patients_organization_change", args=[clinics.ours.pk])
    as_staff = logged_in(client, clinics.staff)

    page = as_staff.get(url)
    posted = as_staff.post(url, organization_form(clinics.ours, **RENAMED))

    assert page.status_code == 200 and "Clinic A" in page.content.decode()
    assert 'name="_save"' not in page.content.decode()  # shown, not editable
    assert posted.status_code == 403
    clinics.ours.refresh_from_db()
    assert (clinics.ours.name, clinics.ours.alert_channel, clinics.ours.alert_address) == (
        "Clinic A",
        "",
        "",
    )


def test_a_clinic_admin_changes_their_clinics_settings_only(client, clinics):
    Membership.objects.create(user=clinics.head, organization=clinics.elsewhere)  # as staff
    as_head = logged_in(client, clinics.head)

    ours = as_head.post(
        reverse("admin:patients_organization_change", args=[clinics.ours.pk]),
        organization_form(clinics.ours, **RENAMED),
    )
    theirs = as_head.post(
        reverse("admin:patients_organization_change", args=[clinics.elsewhere.pk]),
        organization_form(clinics.elsewhere, **RENAMED),
    )

    assert (ours.status_code, theirs.status_code) == (302, 403)
    clinics.ours.refresh_from_db()
    clinics.elsewhere.refresh_from_db()
    assert (clinics.ours.name, clinics.ours.alert_address) == ("Renamed Clinic", "me@example.org")
    assert clinics.ours.slug == "clinic-a"  # the API's name for it: the operators'
    assert clinics.elsewhere.name == "Clinic Elsewhere"


# --- 14. Bounded inlines ----------------------------------------------------------------


def initial_forms(page: str, prefix: str) -> int:
    return int(re.search(rf'name="{prefix}-INITIAL_FORMS" value="(\d+)"', page).group(1))


def test_a_messages_page_shows_its_latest_deliveries_and_links_to_all(client, clinics):
    message = message_schedule(patient=clinics.patient, content="x", starts_at=from_now(600))
    start = timezone.now() - timedelta(days=60)
    Delivery.objects.bulk_create(
        Delivery(
            message=message,
            occurrence_at=start + timedelta(days=day),
            channel="telegram",
            status=DeliveryStatus.SENT,
            next_attempt_at=start,
            expires_at=start,
        )
        for day in range(60)
    )
    newest, oldest = (
        message.deliveries.order_by("-occurrence_at")[0],
        message.deliveries.earliest("occurrence_at"),
    )
    as_staff = logged_in(client, clinics.staff)

    page = as_staff.get(reverse("admin:scheduling_scheduledmessage_change", args=[message.pk]))

    shown = page.content.decode()
    everything = (
        f"{reverse('admin:scheduling_delivery_changelist')}?message__id__exact={message.pk}"
    )
    assert initial_forms(shown, "deliveries") == 20
    assert f'<a href="{everything}">All 60 deliveries</a>' in shown
    assert reverse("admin:scheduling_delivery_change", args=[newest.pk]) in shown
    assert reverse("admin:scheduling_delivery_change", args=[oldest.pk]) not in shown
    listed = as_staff.get(everything)
    assert listed.status_code == 200 and "60 deliveries" in listed.content.decode()


def test_a_deliverys_page_shows_its_latest_attempts_and_links_to_all(client, clinics):
    message = message_schedule(patient=clinics.patient, content="x", starts_at=from_now(600))
    now = timezone.now()
    delivery = Delivery.objects.create(
        message=message, occurrence_at=now, channel="telegram", next_attempt_at=now, expires_at=now
    )
    DeliveryAttempt.objects.bulk_create(
        DeliveryAttempt(
            delivery=delivery,
            number=n,
            started_at=now,
            outcome="transient",
            error_code=f"code-{n:02}",
        )
        for n in range(1, 31)
    )
    as_staff = logged_in(client, clinics.staff)

    page = as_staff.get(reverse("admin:scheduling_delivery_change", args=[delivery.pk]))

    shown = page.content.decode()
    everything = (
        f"{reverse('admin:scheduling_deliveryattempt_changelist')}"
        f"?delivery__id__exact={delivery.pk}"
    )
    assert initial_forms(shown, "attempt_log") == 20
    assert f'<a href="{everything}">All 30 delivery attempts</a>' in shown
    assert "code-30" in shown and "code-10" not in shown
    listed = as_staff.get(everything)
    assert listed.status_code == 200 and "30 delivery attempts" in listed.content.decode()


def test_a_patients_page_shows_at_most_20_contacts_and_links_to_all(client, clinics):
    Contact.objects.bulk_create(
        Contact(patient=clinics.patient, channel=Channel.SMS, address=f"+49151000000{n:02}")
        for n in range(24)
    )  # 25 with the Telegram one
    page = logged_in(client, clinics.head).get(
        reverse("admin:patients_patient_change", args=[clinics.patient.pk])
    )
    shown = page.content.decode()
    everything = (
        f"{reverse('admin:patients_contact_changelist')}?patient__id__exact={clinics.patient.pk}"
    )
    assert initial_forms(shown, "contacts") == 20
    assert f'<a href="{everything}">All 25 contacts</a>' in shown
