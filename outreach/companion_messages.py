"""What check-ins and follow-ups share once written: the model's text, or the template
when there is none, becomes a one-time scheduled message, and the row that asked for it
records which path wrote it and what the model reported."""

from outreach.llm import Completion
from outreach.models import CheckInSource
from scheduling.models import ScheduledMessage
from scheduling.services import message_schedule, message_schedule_from_template


def schedule_written(text: str, *, template: str, **schedule) -> ScheduledMessage:
    """Raises ValidationError when the message cannot be scheduled (for example, the
    patient opted out meanwhile)."""
    if text:
        return message_schedule(content=text, metadata={"written_by": "llm"}, **schedule)
    return message_schedule_from_template(
        template=template, metadata={"written_by": "fallback"}, **schedule
    )


def record_writing(row, *, text: str, reason: str, completion: Completion | None) -> None:
    """Sets `source`, `fallback_reason` and the model's figures on a CheckIn or FollowUp."""
    row.source = CheckInSource.LLM if text else CheckInSource.FALLBACK
    row.fallback_reason = "" if text else reason
    if completion is not None:
        row.model, row.latency_ms = completion.model, completion.latency_ms
        row.prompt_tokens = completion.prompt_tokens
        row.completion_tokens = completion.completion_tokens
