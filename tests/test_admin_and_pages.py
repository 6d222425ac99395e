import pytest
from django.urls import reverse

from channels_app.models import SandboxMessage
from patients.models import Organization
from scheduling.demo import create_demo_data
from scheduling.dispatch import dispatch_due
from scheduling.models import Delivery, MessageStatus, ScheduledMessage
from scheduling.services import message_schedule
from tests.conftest import ago

ADMIN_MODELS = [
    "patients_organization", "patients_patient", "patients_contact",
    "scheduling_scheduledmessage", "scheduling_delivery",
    "channels_app_sandboxmessage", "channels_app_inboxmessage", "scheduling_messagetemplate",
]  # fmt: skip


@pytest.mark.parametrize("model", ADMIN_MODELS)
def test_the_demo_provider_can_open_every_admin_list(demo_client, model):
    response = demo_client.get(reverse(f"admin:{model}_changelist"))
    assert response.status_code == 200


def test_system_periodic_tasks_are_for_operators_not_care_teams(demo_client, admin_client):
    url = reverse("admin:django_celery_beat_periodictask_changelist")
    assert demo_client.get(url).status_code == 403
    assert admin_client.get(url).status_code == 200


def test_a_message_page_shows_its_deliveries_and_a_delivery_its_attempts(
    demo_client, fake_telegram, patient
):
    from scheduling.delivery import deliver

    message = message_schedule(patient=patient, content="x", starts_at=ago(1))
    dispatch_due()
    delivery = message.deliveries.get()
    deliver(delivery.pk)

    page = demo_client.get(reverse("admin:scheduling_scheduledmessage_change", args=[message.pk]))
    assert page.status_code == 200
    assert b"Sent" in page.content
    page = demo_client.get(reverse("admin:scheduling_delivery_change", args=[delivery.pk]))
    assert page.status_code == 200
    assert b"Attempt" in page.content or b"attempt" in page.content


def test_the_admin_cancel_action_cancels_messages(demo_client):
    ids = list(ScheduledMessage.objects.values_list("pk", flat=True)[:2])
    response = demo_client.post(
        reverse("admin:scheduling_scheduledmessage_changelist"),
        {"action": "cancel_messages", "_selected_action": ids},
    )
    assert response.status_code == 302
    statuses = set(ScheduledMessage.objects.filter(pk__in=ids).values_list("status", flat=True))
    assert statuses == {MessageStatus.CANCELLED}


def test_the_sandbox_page_is_labelled_and_lists_what_would_have_been_sent(
    demo_client, settings, patient, make_patient
):
    settings.CHANNEL_SANDBOX = True
    other_clinic = Organization.objects.create(name="Clinic B", slug="clinic-b")
    for who, text in ((patient, "Check-in: how are you?"),
                      (make_patient(org=other_clinic), "Clinic B's message")):  # fmt: skip
        message_schedule(patient=who, content=text, starts_at=ago(1))
    dispatch_due()
    for delivery in Delivery.objects.select_related("message"):
        SandboxMessage.objects.create(channel="telegram", address="1", delivery_id=delivery.pk,
                                      text=delivery.message.content)  # fmt: skip
    page = demo_client.get("/sandbox/")
    assert page.status_code == 200
    assert b"SANDBOX: nothing on this page was sent to Telegram" in page.content
    assert b"Check-in: how are you?" in page.content
    assert b"Clinic B" not in page.content  # another organization's outbox stays hidden


def test_the_sandbox_page_does_not_exist_when_the_sandbox_is_off(demo_client, settings):
    settings.CHANNEL_SANDBOX = False
    assert demo_client.get("/sandbox/").status_code == 404


def test_the_sandbox_page_needs_a_staff_login(client, db, settings):
    settings.CHANNEL_SANDBOX = True
    response = client.get("/sandbox/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_demo_data_is_created_once_with_schedules_due_within_a_minute(db):
    assert create_demo_data() is True
    assert create_demo_data() is False
    messages = ScheduledMessage.objects.filter(status=MessageStatus.ACTIVE)
    assert messages.count() == 6
    first_due = min(m.next_run_at for m in messages)
    from django.utils import timezone

    assert (first_due - timezone.now()).total_seconds() < 60
    assert set(messages.values_list("channel", flat=True)) == {"telegram", "web"}


def test_the_liveness_endpoint_answers(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def admin_add_form(patient, **overrides):
    data = {
        "patient": patient.pk, "channel": "telegram", "content": "Take your pills",
        "format": "text", "priority": 3, "kind": "general", "starts_at_0": "2030-01-01",
        "starts_at_1": "09:00:00",
        "recurrence": "", "timezone": "", "delivery_window_seconds": 3600, "metadata": "{}",
        "deliveries-TOTAL_FORMS": 0, "deliveries-INITIAL_FORMS": 0,
    }  # fmt: skip
    return {**data, **overrides}


def test_a_message_added_in_the_admin_is_scheduled_for_its_patient(demo_client, patient):
    response = demo_client.post(
        reverse("admin:scheduling_scheduledmessage_add"), admin_add_form(patient)
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    message = ScheduledMessage.objects.get(patient=patient)
    assert message.organization_id == patient.organization_id
    assert message.next_run_at == message.starts_at
    assert message.status == MessageStatus.ACTIVE


@pytest.mark.parametrize(
    ("overrides", "shown"),
    [({"format": "html", "content": "<div>x</div>"}, "&lt;div&gt; is not allowed"),
     ({"recurrence": "FREQ=NEVER"}, "Not a valid RRULE"),
     ({"content": "x" * 41000}, "telegram allows 40960")],
)  # fmt: skip
def test_the_admin_form_shows_what_is_wrong_and_saves_nothing(
    demo_client, patient, overrides, shown
):
    response = demo_client.post(
        reverse("admin:scheduling_scheduledmessage_add"), admin_add_form(patient, **overrides)
    )
    assert response.status_code == 200
    assert shown in response.content.decode()
    assert not ScheduledMessage.objects.filter(patient=patient).exists()


def test_a_phrase_in_the_admin_fills_in_the_start_and_the_rule(demo_client, patient):
    response = demo_client.post(
        reverse("admin:scheduling_scheduledmessage_add"),
        admin_add_form(patient, when="daily at 08:00", starts_at_0="", starts_at_1=""),
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    message = ScheduledMessage.objects.get(patient=patient)
    assert message.recurrence == "FREQ=DAILY;BYHOUR=8;BYMINUTE=0"
    local = message.next_run_at.astimezone(patient.zone)
    assert (local.hour, local.minute) == (8, 0)


def test_a_phrase_not_understood_is_shown_on_the_form_and_nothing_is_saved(demo_client, patient):
    response = demo_client.post(
        reverse("admin:scheduling_scheduledmessage_add"),
        admin_add_form(patient, when="dialy 08:00", starts_at_0="", starts_at_1=""),
    )
    assert response.status_code == 200
    assert "unknown word &quot;dialy&quot;" in response.content.decode()
    assert not ScheduledMessage.objects.filter(patient=patient).exists()
