"""Contacts: verified only by the patient (Telegram link) or by a care team's recorded
confirmation, never by a flag in the API; messages go only to verified contacts; STOP
works from any contact, START only from a verified one. One address may belong to
patients of several clinics: nothing tells one clinic that another has it."""

from datetime import timedelta

import pytest
from auditlog.models import LogEntry
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from patients.linking import link_token_create
from patients.models import Channel, Contact, Organization, Patient
from patients.provisioning import provider_create
from scheduling.delivery import deliver
from scheduling.dispatch import dispatch_due
from scheduling.models import DeliveryStatus, ScheduledMessage
from scheduling.services import message_schedule
from tests.conftest import ago
from tests.fakes.telegram_server import message_update
from tests.test_api import API, token_client
from tests.test_inbound import NUMBER, post_sms

PHONE = "+15551234567"


@pytest.fixture
def provider(organization):
    return provider_create(
        organization_slug=organization.slug, username="alice", admin=True, new_token=True
    )


@pytest.fixture
def api(provider):
    return token_client(provider.token)


@pytest.fixture
def other_clinic(db):
    return Organization.objects.create(name="Clinic B", slug="clinic-b")


@pytest.fixture
def care_team_client(client, provider):
    client.force_login(provider.user)
    return client


@pytest.fixture
def twilio(settings):
    from tests.fakes.twilio_server import AUTH_TOKEN
    from tests.test_inbound import PUBLIC_BASE_URL

    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.PUBLIC_BASE_URL = PUBLIC_BASE_URL
    return settings


def sms_contact(patient: Patient, *, verified_ago: timedelta | None = None) -> Contact:
    verified_at = None if verified_ago is None else timezone.now() - verified_ago
    return Contact.objects.create(
        patient=patient, channel=Channel.SMS, address=NUMBER, verified_at=verified_at
    )


# -- 7. Verification ------------------------------------------------------------------------


def test_the_api_cannot_mark_a_contact_verified(api, organization):
    response = api.post(
        f"{API}/patients/",
        {"name": "Dana", "contacts": [{"channel": "sms", "address": PHONE, "verified": True}]},
        format="json",
    )

    assert response.status_code == 400
    assert "verified" in str(response.json()["contacts"])
    assert "confirm" in str(response.json()["contacts"])
    assert not Contact.objects.exists()


def test_a_patient_sent_back_as_read_keeps_its_verified_contact(api, patient):
    body = api.get(f"{API}/patients/{patient.pk}/").json()

    response = api.patch(
        f"{API}/patients/{patient.pk}/", {"contacts": body["contacts"]}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert patient.contacts.get().verified_at is not None


def test_the_care_team_confirms_a_contact_with_who_and_when_recorded(api, provider, make_patient):
    patient = make_patient(chat_id=None)
    contact = sms_contact(patient)

    response = api.post(f"{API}/patients/{patient.pk}/contacts/{contact.pk}/confirm/")

    assert response.status_code == 200, response.json()
    assert response.json()["verified"] is True
    assert response.json()["verified_via"] == "care_team"
    contact.refresh_from_db()
    assert contact.verified_at is not None and contact.verified_by == provider.user
    entry = LogEntry.objects.get(additional_data__action="contact_confirmed")
    assert entry.actor == provider.user and entry.additional_data["contact"] == contact.pk


def test_another_clinics_contact_cannot_be_confirmed(api, make_patient, other_clinic):
    theirs = make_patient(chat_id=None, org=other_clinic)
    mine = make_patient(chat_id=None)
    contact = sms_contact(theirs)

    for patient in (theirs, mine):
        response = api.post(f"{API}/patients/{patient.pk}/contacts/{contact.pk}/confirm/")
        assert response.status_code == 404
    contact.refresh_from_db()
    assert contact.verified_at is None


def test_the_admin_cannot_set_verified_and_records_a_confirmation(
    care_team_client, provider, make_patient
):
    patient = make_patient(chat_id=None)
    add = reverse("admin:patients_contact_add")
    data = {
        "patient": patient.pk,
        "channel": "sms",
        "address": PHONE,
        "verified_at_0": "2020-01-01",
        "verified_at_1": "00:00:00",
    }

    assert care_team_client.post(add, data).status_code == 302
    unconfirmed = Contact.objects.at("sms", PHONE).get()
    assert unconfirmed.verified_at is None

    response = care_team_client.post(
        reverse("admin:patients_contact_changelist"),
        {"action": "confirm_contacts", "_selected_action": [unconfirmed.pk]},
    )

    assert response.status_code == 302
    unconfirmed.refresh_from_db()
    assert unconfirmed.verified_at is not None and unconfirmed.verified_by == provider.user
    assert unconfirmed.verified_via == "care_team"


def test_the_admin_confirm_box_on_a_contact_records_who(care_team_client, provider, make_patient):
    patient = make_patient(chat_id=None)
    data = {"patient": patient.pk, "channel": "sms", "address": PHONE, "confirm": "on"}

    care_team_client.post(reverse("admin:patients_contact_add"), data)

    contact = Contact.objects.at("sms", PHONE).get()
    assert contact.verified_by == provider.user and contact.verified_at is not None


@pytest.mark.parametrize("ticked", [True, False])
def test_the_patient_pages_contact_row_confirms_only_when_ticked(
    care_team_client, provider, make_patient, ticked
):
    patient = make_patient(chat_id=None)
    form = {
        "organization": patient.organization_id,
        "name": patient.name,
        "timezone": "Europe/Berlin",
        "language": "en",
        "preferred_channel": "web",
        "quiet_hours_start": "",
        "quiet_hours_end": "",
        "contacts-TOTAL_FORMS": 1,
        "contacts-INITIAL_FORMS": 0,
        "contacts-0-channel": "sms",
        "contacts-0-address": PHONE,
        "contacts-0-confirm": "on" if ticked else "",
    }
    change = reverse("admin:patients_patient_change", args=[patient.pk])

    response = care_team_client.post(change, form)

    assert response.status_code == 302, response.content.decode()[-3000:]
    contact = patient.contacts.get()
    assert (contact.verified_by == provider.user) is ticked
    assert (contact.verified_at is not None) is ticked


def test_a_changed_address_is_no_longer_verified(care_team_client, patient):
    contact = patient.contacts.get()
    change = reverse("admin:patients_contact_change", args=[contact.pk])

    response = care_team_client.post(
        change, {"patient": patient.pk, "channel": "telegram", "address": "9990001"}
    )

    assert response.status_code == 302
    contact.refresh_from_db()
    assert contact.address == "9990001" and contact.verified_at is None


def test_telegram_linking_still_verifies_the_chat(make_patient):
    from patients.linking import link_chat

    patient = make_patient(chat_id=None)
    link = link_token_create(patient=patient)

    link_chat(token=link.token, chat_id="31337")

    contact = Contact.objects.at("telegram", "31337").get()
    assert contact.verified_at is not None and contact.verified_via == "telegram_link"


def test_a_message_cannot_be_tied_to_an_unverified_contact(make_patient):
    patient = make_patient(chat_id=None)
    sms_contact(patient)

    with pytest.raises(ValidationError, match="verified"):
        message_schedule(patient=patient, content="x", starts_at=ago(1), channel="sms")


def test_a_delivery_is_not_sent_to_a_contact_no_longer_verified(fake_telegram, patient):
    message = message_schedule(patient=patient, content="x", starts_at=ago(1), channel="telegram")
    Contact.objects.filter(patient=patient).update(verified_at=None)

    dispatch_due()
    delivery = message.deliveries.get()
    deliver(delivery.pk)

    delivery.refresh_from_db()
    assert fake_telegram.sent() == []
    assert (delivery.status, delivery.error_code) == (DeliveryStatus.FAILED, "no_contact")
    assert "verified" in delivery.error_text


def test_start_from_an_unverified_number_does_not_opt_back_in(client, twilio, make_patient):
    patient = make_patient(chat_id=None)
    sms_contact(patient)
    post_sms(client, "STOP", sid="SM1")
    patient.refresh_from_db()
    assert patient.opted_out_at is not None

    post_sms(client, "START", sid="SM2")

    patient.refresh_from_db()
    assert patient.opted_out_at is not None


def test_telegram_start_from_an_unverified_chat_does_not_opt_back_in(
    client, settings, fake_telegram, make_patient
):
    from tests.test_bot import SECRET, Updates

    settings.TELEGRAM_WEBHOOK_SECRET = SECRET
    patient = make_patient(chat_id=None)
    Contact.objects.create(patient=patient, channel=Channel.TELEGRAM, address="8080")
    updates = Updates(client)
    updates.send(message_update("8080", "/stop"))
    updates.send(message_update("8080", "/start"))

    patient.refresh_from_db()
    assert patient.opted_out_at is not None


# -- 8. One address, several clinics ---------------------------------------------------------


def test_an_address_another_clinic_has_is_accepted_and_reveals_nothing(
    api, make_patient, other_clinic
):
    make_patient(org=other_clinic, chat_id="555123")
    sms = make_patient(org=other_clinic, chat_id=None)
    sms_contact(sms, verified_ago=timedelta(days=1))

    response = api.post(
        f"{API}/patients/",
        {
            "name": "G",
            "contacts": [
                {"channel": "telegram", "address": "555123"},
                {"channel": "sms", "address": NUMBER},
            ],
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    assert Contact.objects.at("telegram", "555123").count() == 2


def test_an_address_another_patient_of_the_clinic_has_is_refused(api, patient):
    taken = patient.contacts.get().address

    response = api.post(
        f"{API}/patients/",
        {"name": "G", "contacts": [{"channel": "telegram", "address": taken}]},
        format="json",
    )

    assert response.status_code == 400
    assert "another patient of this clinic" in str(response.json()["contacts"]).lower()


def test_the_admin_accepts_an_address_another_clinic_has(
    care_team_client, make_patient, other_clinic
):
    make_patient(org=other_clinic, chat_id="555124")
    mine = make_patient(chat_id=None)

    response = care_team_client.post(
        reverse("admin:patients_contact_add"),
        {"patient": mine.pk, "channel": "telegram", "address": "555124"},
    )

    assert response.status_code == 302
    assert Contact.objects.at("telegram", "555124").count() == 2


def test_the_admin_refuses_an_address_another_patient_of_the_clinic_has(
    care_team_client, patient, make_patient
):
    taken = patient.contacts.get().address

    response = care_team_client.post(
        reverse("admin:patients_contact_add"),
        {"patient": make_patient(chat_id=None).pk, "channel": "telegram", "address": taken},
    )

    assert response.status_code == 200
    assert b"another patient of this clinic" in response.content.lower()


def test_stop_from_an_address_in_two_clinics_stops_both(client, twilio, make_patient, other_clinic):
    mine = make_patient(chat_id=None)
    theirs = make_patient(chat_id=None, org=other_clinic)
    sms_contact(mine, verified_ago=timedelta(days=1))
    sms_contact(theirs)

    post_sms(client, "STOP")

    assert Patient.objects.filter(opted_out_at__isnull=True).count() == 0


def test_start_opts_back_in_only_where_the_address_is_verified(
    client, twilio, make_patient, other_clinic
):
    verified = make_patient(chat_id=None)
    unverified = make_patient(chat_id=None, org=other_clinic)
    sms_contact(verified, verified_ago=timedelta(days=1))
    sms_contact(unverified)
    post_sms(client, "STOP", sid="SM1")

    post_sms(client, "START", sid="SM2")

    verified.refresh_from_db(), unverified.refresh_from_db()
    assert verified.opted_out_at is None and unverified.opted_out_at is not None


def test_commands_act_for_the_patient_whose_contact_was_verified_last(
    client, twilio, make_patient, other_clinic
):
    earlier = make_patient(chat_id=None)
    later = make_patient(chat_id=None, org=other_clinic)
    sms_contact(earlier, verified_ago=timedelta(days=3))
    sms_contact(later, verified_ago=timedelta(hours=1))

    post_sms(client, "schedule in 2h Walk")

    assert list(ScheduledMessage.objects.values_list("patient", flat=True)) == [later.pk]


def test_a_chat_linked_in_one_clinic_can_be_linked_in_another(make_patient, other_clinic):
    from patients.linking import LinkOutcome, link_chat

    make_patient(chat_id="7070")
    theirs = make_patient(chat_id=None, org=other_clinic)
    same_clinic = make_patient(chat_id=None)

    linked = link_chat(token=link_token_create(patient=theirs).token, chat_id="7070")
    refused = link_chat(token=link_token_create(patient=same_clinic).token, chat_id="7070")

    assert linked.outcome == LinkOutcome.LINKED
    assert refused.outcome == LinkOutcome.OTHER_PATIENT
    assert Contact.objects.at("telegram", "7070").count() == 2
