"""The live preview on the create form: what a phrase means for one patient, as the
next occurrences in the patient's local time, or the parser's own error."""

from dataclasses import dataclass, field
from datetime import datetime

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from patients.models import Patient
from scheduling.models import ScheduledMessage
from scheduling.occurrences import PreviewRow, message_preview
from scheduling.phrases import PhraseError, parse_schedule
from scheduling.services import validate_recurrence

PREVIEW_COUNT = 5


@dataclass(frozen=True)
class Preview:
    rows: list[PreviewRow] = field(default_factory=list)
    description: str = ""
    zone_name: str = ""
    error: str = ""
    prompt: str = ""  # what to do first, when there is nothing to preview yet


def phrase_preview(
    patient: Patient | None, phrase: str, *, now: datetime, count: int = PREVIEW_COUNT
) -> Preview:
    if patient is None:
        return Preview(prompt=_("Choose a patient to see when the message would be sent."))
    phrase = (phrase or "").strip()
    if not phrase:
        return Preview(prompt=_('Type a phrase such as "daily at 08:00" to see the next times.'))
    try:
        parsed = parse_schedule(phrase, zone_name=patient.timezone, now=now)
        # Unsaved: the same engine the dispatcher uses, quiet hours included.
        probe = ScheduledMessage(
            patient=patient,
            starts_at=parsed.starts_at.replace(microsecond=0),
            recurrence=parsed.rrule,
        )
        validate_recurrence(probe)
        rows = message_preview(probe, count=count, after=now)
    except PhraseError as error:
        return Preview(error=str(error))
    except ValidationError as error:
        return Preview(error=" ".join(error.messages))
    if not rows:
        return Preview(error=_("This schedule has no occurrence still to send."))
    return Preview(rows=rows, description=parsed.description, zone_name=patient.timezone)
