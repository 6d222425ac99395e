"""A care team never sees or touches another organization's patients or messages through
the API: such objects are absent from lists and "not found" (404, never 403) on every
detail route and action, and their ids are "not found" inside request bodies."""

import pytest

from patients.models import Patient
from patients.provisioning import provider_create
from scheduling.models import Delivery, DeliveryStatus, MessageStatus, ScheduledMessage
from scheduling.services import message_schedule
from tests.conftest import from_now
from tests.test_api import API, token_client


@pytest.fixture
def clinics(make_patient, organization):
    """Clinic A (the `organization` fixture) and clinic B: a provider (admin), a patient
    and a message each; A's message also has a failed delivery."""
    found = {}
    for label, slug in (("a", organization.slug), ("b", "clinic-b")):
        provider = provider_create(
            organization_slug=slug, username=f"p-{label}", admin=True, new_token=True
        )
        patient = make_patient(org=provider.organization)
        message = message_schedule(
            patient=patient,
            content=f"for {label}",
            starts_at=from_now(600),
            recurrence="FREQ=DAILY",
        )
        found[label] = {"api": token_client(provider.token), "patient": patient, "message": message}
    Delivery.objects.create(
        message=found["a"]["message"],
        occurrence_at=from_now(-60),
        channel="telegram",
        status=DeliveryStatus.FAILED,
        next_attempt_at=from_now(-60),
        expires_at=from_now(-1),
    )
    return found


def test_lists_show_only_the_users_organization(clinics):
    b = clinics["b"]["api"]
    messages = b.get(f"{API}/messages/").json()["results"]
    patients = b.get(f"{API}/patients/").json()["results"]
    assert [m["id"] for m in messages] == [clinics["b"]["message"].pk]
    assert [p["id"] for p in patients] == [clinics["b"]["patient"].pk]
    filtered = b.get(f"{API}/messages/", {"patient": clinics["a"]["patient"].pk})
    assert filtered.status_code == 400  # another clinic's patient is no valid choice


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "messages/{message}/", None),
        ("patch", "messages/{message}/", {"content": "hijacked"}),
        ("put", "messages/{message}/", {"content": "hijacked"}),
        ("delete", "messages/{message}/", None),
        ("post", "messages/{message}/cancel/", None),
        ("post", "messages/{message}/send-now/", None),
        ("post", "messages/{message}/retry/", None),
        ("get", "messages/{message}/preview/", None),
        ("get", "patients/{patient}/", None),
        ("patch", "patients/{patient}/", {"name": "hijacked"}),
        ("put", "patients/{patient}/", {"name": "hijacked"}),
        ("delete", "patients/{patient}/", None),
    ],
)
def test_another_organizations_object_is_not_found_not_forbidden(clinics, method, path, body):
    a = clinics["a"]
    url = f"{API}/" + path.format(message=a["message"].pk, patient=a["patient"].pk)

    response = getattr(clinics["b"]["api"], method)(url, body, format="json")

    assert response.status_code == 404, response.content
    assert "for a" not in response.content.decode()
    assert a["patient"].name not in response.content.decode()
    message = ScheduledMessage.objects.get(pk=a["message"].pk)
    assert (message.status, message.content) == (MessageStatus.ACTIVE, "for a")
    patient = Patient.objects.get(pk=a["patient"].pk)
    assert (patient.name, patient.opted_out_at) == (a["patient"].name, None)
    assert list(message.deliveries.values_list("status", flat=True)) == ["failed"]


def test_an_unknown_id_answers_exactly_like_another_organizations(clinics):
    b = clinics["b"]["api"]
    theirs = b.post(f"{API}/messages/{clinics['a']['message'].pk}/cancel/")
    missing = b.post(f"{API}/messages/99999999/cancel/")
    assert (theirs.status_code, theirs.json()) == (missing.status_code, missing.json())


def test_a_message_for_another_organizations_patient_is_not_found(clinics):
    b = clinics["b"]["api"]
    body = {"patient": clinics["a"]["patient"].pk, "content": "x", "schedule": "daily at 08:00"}

    theirs = b.post(f"{API}/messages/", body, format="json")
    missing = b.post(f"{API}/messages/", {**body, "patient": 99999999}, format="json")
    draft = b.post(f"{API}/messages/preview/", body, format="json")

    assert theirs.status_code == missing.status_code == draft.status_code == 400
    assert theirs.json() == missing.json() == draft.json() == {"patient": ["Not found."]}
    assert ScheduledMessage.objects.filter(patient=clinics["a"]["patient"]).count() == 1


def test_bulk_treats_another_organizations_ids_as_not_found(clinics):
    b = clinics["b"]["api"]
    theirs, own = clinics["a"]["message"].pk, clinics["b"]["message"].pk

    cancel = b.post(f"{API}/messages/bulk/", {"cancel": [own, theirs]}, format="json")
    create = b.post(
        f"{API}/messages/bulk/",
        {
            "create": [
                {
                    "patient": clinics["a"]["patient"].pk,
                    "content": "x",
                    "schedule": "daily at 08:00",
                }
            ]
        },
        format="json",
    )

    assert cancel.status_code == create.status_code == 400
    assert cancel.json() == {"errors": [{"index": 1, "errors": {"id": ["Not found."]}}]}
    assert create.json() == {"errors": [{"index": 0, "errors": {"patient": ["Not found."]}}]}
    assert set(ScheduledMessage.objects.values_list("status", flat=True)) == {"active"}


def test_templates_of_another_organization_are_neither_listed_nor_reachable(clinics):
    a, b = clinics["a"]["api"], clinics["b"]["api"]
    created = a.post(
        f"{API}/templates/",
        {"key": "private", "language": "en", "body": "A only {name}"},
        format="json",
    )
    url = f"{API}/templates/{created.json()['id']}/"

    assert all(row["key"] != "private" for row in b.get(f"{API}/templates/").json())
    assert b.get(url).status_code == 404
    assert b.patch(url, {"body": "B was here"}, format="json").status_code == 404
    assert b.delete(url).status_code == 404
    use = b.post(
        f"{API}/messages/",
        {
            "patient": clinics["b"]["patient"].pk,
            "template": "private",
            "schedule": "daily at 08:00",
        },
        format="json",
    )
    assert use.status_code == 400 and "template" in use.json()
