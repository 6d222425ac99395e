from datetime import datetime

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from patients.models import Contact
from scheduling.models import ScheduledMessage
from scheduling.services import choose_channel, message_schedule
from tests.conftest import from_now


def test_it_schedules_on_the_patients_preferred_channel_with_next_run_at_in_utc(patient):
    due = from_now(60)
    message = message_schedule(patient=patient, content="hi", starts_at=due)
    assert message.channel == "telegram"
    assert message.next_run_at == due
    assert message.organization_id == patient.organization_id
    assert message.zone_name == "Europe/Berlin"


def test_a_patient_without_a_messenger_contact_falls_back_to_the_web_inbox(patient):
    Contact.objects.filter(patient=patient).update(blocked_at=timezone.now())
    assert choose_channel(patient, None) == "web"


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"content": ""}, "content", "empty"),
        ({"content": "x" * 41000}, "content", "40960"),
        ({"format": "html", "content": "<div>x</div>"}, "content", "<div>"),
        ({"recurrence": "FREQ=SOMETIMES"}, "recurrence", "RRULE"),
        ({"zone_name": "Mars/Olympus"}, "timezone", "IANA"),
        ({"priority": 9}, "__all__", "priority"),
        ({"channel": "pigeon"}, "channel", "not a channel"),
        ({"starts_at": datetime(2030, 1, 1, 9, 0)}, "starts_at", "offset"),  # noqa: DTZ001
    ],
)
def test_bad_input_names_the_field_and_saves_nothing(patient, kwargs, field, words):
    arguments = {"patient": patient, "content": "hello", "starts_at": from_now(60), **kwargs}
    with pytest.raises(ValidationError) as raised:
        message_schedule(**arguments)
    errors = raised.value.message_dict
    assert field in errors, errors
    assert words.lower() in " ".join(errors[field]).lower()
    assert ScheduledMessage.objects.count() == 0


def test_it_refuses_a_requested_channel_the_patient_cannot_be_reached_on(make_patient):
    web_only = make_patient(chat_id=None)
    with pytest.raises(ValidationError) as raised:
        message_schedule(patient=web_only, content="x", starts_at=from_now(5), channel="telegram")
    assert "no verified, unblocked telegram contact" in raised.value.message_dict["channel"][0]


def test_it_refuses_a_patient_who_opted_out(patient):
    patient.opted_out_at = timezone.now()
    patient.save()
    with pytest.raises(ValidationError) as raised:
        message_schedule(patient=patient, content="x", starts_at=from_now(5))
    assert "opted out" in raised.value.message_dict["patient"][0]
