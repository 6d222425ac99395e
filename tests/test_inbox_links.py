"""The patient's web inbox link: a random secret stored as its hash, expiring, revocable
and rotatable by the care team, refused for a deactivated patient, and read marks set
only by a real visit (a POST from the page), never by a link preview's GET."""

import hashlib
import re
from datetime import timedelta

import pytest
from django.core import signing
from django.urls import reverse
from django.utils import timezone

from channels_app.models import InboxMessage
from patients.inbox_links import inbox_link_issue, inbox_links_revoke
from patients.models import Channel, Contact, InboxLink
from patients.provisioning import provider_create
from tests.test_api import API, token_client
from tests.test_bot import say as bot_say


@pytest.fixture
def web_patient(make_patient):
    return make_patient(chat_id=None)


def read_path(path: str) -> str:
    return path + "read/"


def test_a_link_is_a_random_secret_and_only_its_hash_is_stored(web_patient):
    issued = inbox_link_issue(patient=web_patient)

    row = InboxLink.objects.get(patient=web_patient)
    assert row.token_hash == hashlib.sha256(issued.token.encode()).hexdigest()
    assert len(issued.token) >= 43 and str(web_patient.pk) not in issued.token.split("-")
    assert issued.path == f"/inbox/{issued.token}/"
    stored = " ".join(str(value) for value in InboxLink.objects.values_list().get())
    assert issued.token not in stored


def test_the_signed_links_of_before_open_nothing(client, web_patient):
    old = signing.dumps(web_patient.pk, salt="companion.patient-inbox")

    assert client.get(f"/inbox/{old}/").status_code == 404


def test_a_link_preview_get_shows_the_messages_but_marks_none_read(client, web_patient):
    InboxMessage.objects.create(patient=web_patient, body="Results-ready", format="text")
    path = inbox_link_issue(patient=web_patient).path

    page = client.get(path)

    assert page.status_code == 200 and b"Results-ready" in page.content
    assert page["Cache-Control"] == "private, no-store"
    assert page["Referrer-Policy"] == "no-referrer"
    assert web_patient.inbox.filter(read_at__isnull=True).count() == 1


def test_the_pages_read_mark_marks_what_it_showed_and_nothing_newer(client, web_patient):
    shown = InboxMessage.objects.create(patient=web_patient, body="shown", format="text")
    path = inbox_link_issue(patient=web_patient).path
    page = client.get(path).content.decode()
    later = InboxMessage.objects.create(patient=web_patient, body="arrived later", format="text")

    assert f'name="up_to" value="{shown.pk}"' in page
    response = client.post(read_path(path), {"up_to": str(shown.pk)})

    assert response.status_code == 303 and response["Location"] == path
    shown.refresh_from_db(), later.refresh_from_db()
    assert shown.read_at is not None and later.read_at is None


@pytest.mark.parametrize("up_to", ["", "x", "-1", "99999999999999999999999"])
def test_a_bad_read_mark_is_a_clear_400(client, web_patient, up_to):
    path = inbox_link_issue(patient=web_patient).path
    response = client.post(read_path(path), {"up_to": up_to})
    assert response.status_code == 400 and b"up_to" in response.content


def test_a_read_mark_by_get_or_with_a_wrong_link_changes_nothing(client, web_patient):
    InboxMessage.objects.create(patient=web_patient, body="x", format="text")
    path = inbox_link_issue(patient=web_patient).path

    assert client.get(read_path(path)).status_code == 405
    assert client.post("/inbox/" + "A" * 43 + "/read/", {"up_to": "1"}).status_code == 404
    assert web_patient.inbox.filter(read_at__isnull=True).count() == 1


def test_a_link_expires_after_inbox_link_days(client, settings, web_patient):
    settings.INBOX_LINK_DAYS = 7
    issued = inbox_link_issue(patient=web_patient)
    expected = timezone.now() + timedelta(days=7)
    assert abs((issued.expires_at - expected).total_seconds()) < 60

    InboxLink.objects.filter(patient=web_patient).update(expires_at=timezone.now())

    page = client.get(issued.path)
    assert page.status_code == 404
    assert b"ask your care team" in page.content and b"/inbox" in page.content
    assert client.post(read_path(issued.path), {"up_to": "1"}).status_code == 404


def test_a_new_link_replaces_the_old_one_and_a_revoked_link_opens_nothing(client, web_patient):
    first = inbox_link_issue(patient=web_patient)
    second = inbox_link_issue(patient=web_patient)

    assert client.get(first.path).status_code == 404
    assert client.get(second.path).status_code == 200
    assert inbox_links_revoke(patient=web_patient) == 1
    assert client.get(second.path).status_code == 404


def test_a_deactivated_patients_link_opens_nothing_and_none_is_issued(
    client, organization, web_patient
):
    issued = inbox_link_issue(patient=web_patient)
    api = token_client(
        provider_create(
            organization_slug=organization.slug, username="alice", admin=True, new_token=True
        ).token
    )

    assert api.delete(f"{API}/patients/{web_patient.pk}/").status_code == 204

    assert client.get(issued.path).status_code == 404
    web_patient.refresh_from_db()
    assert web_patient.deactivated_at is not None
    with pytest.raises(Exception, match="deactivated"):
        inbox_link_issue(patient=web_patient)


# -- The admin: issue (rotate) and revoke ---------------------------------------------------


@pytest.fixture
def care_team_client(client, organization):
    client.force_login(provider_create(organization_slug=organization.slug, username="carol").user)
    return client


def test_the_admin_issues_a_link_shown_once_and_the_old_one_stops(care_team_client, web_patient):
    old = inbox_link_issue(patient=web_patient)
    changelist = reverse("admin:patients_patient_changelist")

    page = care_team_client.post(
        changelist, {"action": "issue_inbox_links", "_selected_action": [web_patient.pk]}
    )

    assert page.status_code == 200
    token = re.search(r"/inbox/([A-Za-z0-9_-]{43})/", page.content.decode()).group(1)
    assert care_team_client.get(f"/inbox/{token}/").status_code == 200
    assert care_team_client.get(old.path).status_code == 404
    change = care_team_client.get(reverse("admin:patients_patient_change", args=[web_patient.pk]))
    assert token not in change.content.decode()  # shown once, never again
    assert b"expires" in change.content


def test_the_admin_revokes_links(care_team_client, web_patient):
    issued = inbox_link_issue(patient=web_patient)

    response = care_team_client.post(
        reverse("admin:patients_patient_changelist"),
        {"action": "revoke_inbox_links", "_selected_action": [web_patient.pk]},
    )

    assert response.status_code == 302
    assert care_team_client.get(issued.path).status_code == 404


# -- The bot: /inbox gives a fresh link ---------------------------------------------------


def test_the_bot_answers_inbox_with_a_fresh_link(updates, bot, settings, make_patient):
    from tests.test_bot import chat_of

    settings.PUBLIC_BASE_URL = "https://companion.example.org"
    patient = make_patient()
    old = inbox_link_issue(patient=patient)

    reply = bot_say(updates, bot, chat_of(patient), "/inbox")

    url = re.search(r"https://companion\.example\.org(/inbox/[A-Za-z0-9_-]{43}/)", reply)
    assert url is not None, reply
    assert updates.client.get(url.group(1)).status_code == 200
    assert updates.client.get(old.path).status_code == 404


def test_an_unverified_contact_gets_no_inbox_link(updates, bot, settings, make_patient):
    settings.PUBLIC_BASE_URL = "https://companion.example.org"
    patient = make_patient(chat_id=None)
    Contact.objects.create(patient=patient, channel=Channel.TELEGRAM, address="424242")

    reply = bot_say(updates, bot, "424242", "/inbox")

    assert "/inbox/" not in reply
    assert not InboxLink.objects.exists()


@pytest.fixture
def updates(client, bot):
    from tests.test_bot import Updates

    return Updates(client)


@pytest.fixture
def bot(settings, fake_telegram):
    from tests.test_bot import SECRET

    settings.TELEGRAM_WEBHOOK_SECRET = SECRET
    settings.TELEGRAM_BOT_USERNAME = "fake_bot"
    return fake_telegram
