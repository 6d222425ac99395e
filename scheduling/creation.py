"""One way in for a new message from any surface (API, web UI, bot): what to send
(text, or a template and its parameters) and when (a time, a phrase, or a rule).

Every problem comes back as a ValidationError naming the field, before anything is
saved.
"""

from dataclasses import dataclass, field
from datetime import datetime

from django.core.exceptions import ValidationError
from django.utils import timezone

from patients.models import Patient
from scheduling.attachments import Upload
from scheduling.models import ScheduledMessage
from scheduling.phrases import PhraseError, parse_schedule
from scheduling.services import message_schedule, message_schedule_from_template


@dataclass
class MessageRequest:
    patient: Patient
    content: str | None = None
    format: str = "text"
    template: str | None = None
    parameters: dict = field(default_factory=dict)
    scheduled_time: datetime | None = None  # aware
    schedule: str | None = None  # a phrase: "daily at 08:00"
    recurrence: str | dict | None = None  # an RRULE line, or a JSON pattern
    timezone: str = ""  # empty: the patient's
    channel: str | None = None
    priority: int = 3
    delivery_window_seconds: int | None = None
    quiet_hours_override: bool = False
    metadata: dict = field(default_factory=dict)
    attachment: Upload | None = None  # a photo, voice note or document


def message_create(request: MessageRequest) -> ScheduledMessage:
    starts_at, rule = message_timing(request)
    options = {
        "patient": request.patient, "starts_at": starts_at, "recurrence": rule,
        "channel": request.channel or None, "priority": request.priority,
        "zone_name": request.timezone, "delivery_window_seconds": request.delivery_window_seconds,
        "ignore_quiet_hours": request.quiet_hours_override, "metadata": request.metadata,
        "attachment": request.attachment,
    }  # fmt: skip
    has_content, has_template = bool(request.content), bool(request.template)
    if request.attachment is not None and not has_content and not has_template:
        has_content, request.content = True, ""  # a photo alone, without a text
    if has_content == has_template:
        raise ValidationError({"content": "Give either content or a template, not both."})
    if has_template:
        return message_schedule_from_template(
            template=request.template, params=request.parameters, **options
        )
    return message_schedule(content=request.content, format=request.format, **options)


# The ways a request may say when: alone, or a start with a rule.
TIMINGS = (["scheduled_time"], ["schedule"], ["recurrence"], ["scheduled_time", "recurrence"])


def message_timing(request: MessageRequest) -> tuple[datetime, str]:
    """When a request says to send: (first occurrence in UTC, RRULE or "").

    A scheduled_time with a recurrence is a repeating message that starts then; a JSON
    pattern without a "time" takes the scheduled time's local time."""
    given = [name for name in ("scheduled_time", "schedule", "recurrence")
             if getattr(request, name) not in (None, "", {})]  # fmt: skip
    if given not in TIMINGS:
        problem = "Give one of scheduled_time, schedule or recurrence, or both scheduled_time "
        problem += "and recurrence (a repeating message that starts then)."
        raise ValidationError({"scheduled_time": problem})
    if request.scheduled_time is not None and timezone.is_naive(request.scheduled_time):
        raise ValidationError({"scheduled_time": "The time needs a UTC offset."})
    if given == ["scheduled_time"]:
        return request.scheduled_time, ""
    field_name = given[-1]
    phrase = getattr(request, field_name)
    bare_rule = isinstance(phrase, str) and "=" in phrase and not phrase.strip().startswith("{")
    if field_name == "recurrence" and bare_rule and not phrase.strip().upper().startswith("RRULE:"):
        phrase = "RRULE:" + phrase.strip()  # a bare FREQ=... line
    zone = request.timezone or request.patient.timezone
    try:
        parsed = parse_schedule(
            phrase, zone_name=zone, now=timezone.now(), starting=request.scheduled_time
        )
    except PhraseError as error:
        raise ValidationError({field_name: str(error)}) from error
    return parsed.starts_at, parsed.rrule
