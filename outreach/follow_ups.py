"""Follow-ups for patients who have gone quiet, and the ones a care team asks for.

Each patient's FollowUpState holds the next moment to look at them (`next_at`, indexed).
The planner reads only the due ones. A patient who wrote since is simply looked at
again when their new quiet period would end: nothing has to be told when they write.
One who stayed quiet gets a follow-up, unless they had FOLLOW_UP_MAX_PER_USER_PER_WEEK
in the last 7 days, another companion message within FOLLOW_UP_COOLDOWN_HOURS, or it
is their quiet hours: then they are looked at again when that ends. A care team's
follow-up goes at the time it was asked for, past the cap and the cooldown, but never to
a patient who opted out of follow-ups or of everything.

Written like a check-in (writing.py): the language model with the fallback template
`follow_up`, through the normal delivery path. A patient who writes within
FOLLOW_UP_RESPONSE_HOURS of a follow-up is counted as having answered it.
"""

import logging
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from outreach import metrics
from outreach.companion_messages import record_writing, schedule_written
from outreach.eligibility import personas_of, reason_not_to_reach
from outreach.guardrails import checked_text
from outreach.llm import LlmUnavailable, complete
from outreach.models import (
    CheckIn,
    CheckInStatus,
    CompanionPersona,
    FollowUp,
    FollowUpKind,
    FollowUpState,
    FollowUpStatus,
)
from outreach.prompts import Persona, follow_up_prompt, patient_context
from patients.models import Patient
from scheduling.models import MessageKind
from scheduling.occurrences import QuietHours
from scheduling.queueing import publish_task

logger = logging.getLogger(__name__)

WRITE_TASK = "outreach.write_follow_up"
BATCH = 500


def delay() -> timedelta:
    return timedelta(hours=settings.FOLLOW_UP_DEFAULT_DELAY_HOURS)


def state_for(patient: Patient) -> FollowUpState:
    state, _ = FollowUpState.objects.get_or_create(
        patient=patient, defaults={"next_at": _quiet_since(patient) + delay()}
    )
    return state


def _quiet_since(patient: Patient) -> datetime:
    return patient.last_interaction_at or patient.created_at


# -- opting out ---------------------------------------------------------------------


def set_follow_ups(patient: Patient, *, enabled: bool) -> FollowUpState:
    """The patient's (or the care team's) choice; STOP still stops everything."""
    state = state_for(patient)
    state.enabled = enabled
    state.next_at = max(_quiet_since(patient) + delay(), timezone.now()) if enabled else None
    state.save(update_fields=["enabled", "next_at", "updated_at"])
    logger.info("follow-ups of patient %s %s", patient.pk, "on" if enabled else "off")
    return state


# -- planning -------------------------------------------------------------------------


def plan_follow_ups(*, now: datetime | None = None) -> int:
    """Starts the automatic follow-ups due and the care teams' planned ones; returns how
    many were started."""
    now = now or timezone.now()
    started = _start_planned(now)
    if not settings.FOLLOW_UP_ENABLED:
        return started
    while True:
        count, batch = _plan_batch(now)
        started += count
        if batch < BATCH:
            return started


def due_states(now: datetime, limit: int):
    return (
        FollowUpState.objects.filter(enabled=True, next_at__lte=now)
        .order_by("next_at")
        .select_related("patient")
        .select_for_update(skip_locked=True, of=("self",))[:limit]
    )


@transaction.atomic
def _plan_batch(now: datetime) -> tuple[int, int]:
    states = list(due_states(now, BATCH))
    personas = personas_of({state.patient.organization_id for state in states})
    started = 0
    for state in states:
        persona = personas.get(state.patient.organization_id)
        state.next_at, follow_up = _next_step(state.patient, persona, now)
        state.save(update_fields=["next_at", "updated_at"])
        if follow_up is not None:
            started += 1
            transaction.on_commit(lambda pk=follow_up.pk: _publish(pk))
    return started, len(states)


def _next_step(
    patient: Patient, persona: CompanionPersona | None, now: datetime
) -> tuple[datetime, FollowUp | None]:
    """(when to look again, the follow-up started now or None)."""
    quiet_since = _quiet_since(patient)
    if quiet_since + delay() > now:
        return quiet_since + delay(), None  # they wrote since: a new quiet period
    if persona is not None and not persona.follow_ups_enabled:
        return now + delay(), None
    skip, stop = reason_not_to_reach(patient)
    if skip or stop:
        return now + delay(), None
    later = _held_back_until(patient, now)
    if later is not None:
        return later, None
    follow_up = FollowUp.objects.create(
        patient=patient, kind=FollowUpKind.AUTOMATIC, due_at=now, quiet_since=quiet_since
    )
    logger.info(
        "follow-up %s started for patient %s (quiet since %s)",
        follow_up.pk,
        patient.pk,
        quiet_since.isoformat(),
    )
    return now + delay(), follow_up


def _held_back_until(patient: Patient, now: datetime) -> datetime | None:
    """When the weekly cap, the cooldown or quiet hours allow a follow-up, if not now."""
    week = FollowUp.objects.filter(
        patient=patient, status=FollowUpStatus.SCHEDULED, due_at__gt=now - timedelta(days=7)
    ).order_by("due_at")
    cap = settings.FOLLOW_UP_MAX_PER_USER_PER_WEEK
    sent = list(week.values_list("due_at", flat=True))
    if len(sent) >= cap:
        return (sent[-cap] if cap else now) + timedelta(days=7)
    cooldown = timedelta(hours=settings.FOLLOW_UP_COOLDOWN_HOURS)
    last_companion = max(
        [
            *sent[-1:],
            *CheckIn.objects.filter(
                patient=patient, status=CheckInStatus.SCHEDULED, due_at__gt=now - cooldown
            ).values_list("due_at", flat=True),
        ],
        default=None,
    )
    if last_companion is not None and last_companion + cooldown > now:
        return last_companion + cooldown
    if patient.quiet_hours_start is not None:
        quiet = QuietHours(
            patient.quiet_hours_start, patient.quiet_hours_end, ZoneInfo(patient.timezone)
        )
        released = quiet.release(now)
        if released > now:
            return released
    return None


def _start_planned(now: datetime) -> int:
    """The care teams' follow-ups whose time has come."""
    with transaction.atomic():
        due = list(
            FollowUp.objects.filter(status=FollowUpStatus.PLANNED, due_at__lte=now)
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:BATCH]
        )
        FollowUp.objects.filter(pk__in=due).update(status=FollowUpStatus.WRITING)
        for pk in due:
            transaction.on_commit(lambda pk=pk: _publish(pk))
    return len(due)


def _publish(follow_up_id: int) -> None:
    publish_task(WRITE_TASK, (follow_up_id,), queue=settings.OUTREACH_QUEUE)


def follow_up_schedule(patient: Patient, *, at: datetime, actor=None) -> FollowUp:
    """A follow-up the care team asks for ("in 24 hours")."""
    if timezone.is_naive(at):
        raise ValidationError({"at": "The time needs a UTC offset or time zone."})
    if at > timezone.now() + timedelta(days=90):
        raise ValidationError({"at": "A follow-up can be planned up to 90 days ahead."})
    if patient.opted_out_at is not None:
        raise ValidationError({"patient": "The patient has opted out of messages."})
    if not state_for(patient).enabled:
        raise ValidationError({"patient": "The patient has opted out of follow-ups."})
    return FollowUp.objects.create(
        patient=patient,
        kind=FollowUpKind.MANUAL,
        status=FollowUpStatus.PLANNED,
        due_at=max(at, timezone.now()),
        requested_by=actor,
        quiet_since=patient.last_interaction_at,
    )


# -- writing --------------------------------------------------------------------------


def write_follow_up(follow_up_id: int) -> str:
    follow_up = FollowUp.objects.select_related("patient").filter(pk=follow_up_id).first()
    if follow_up is None or follow_up.status != FollowUpStatus.WRITING:
        return "already done"
    patient = follow_up.patient
    persona = CompanionPersona.objects.filter(organization_id=patient.organization_id).first()
    sharing = bool(persona and persona.share_context_with_llm)
    context = patient_context(patient, timezone.now()) if sharing else []
    quiet = follow_up.quiet_since
    days = (timezone.now() - quiet).days if quiet else None
    used = [
        "persona",
        "first name",
        "language",
        *(["days quiet"] if days else []),
        *(["adherence and appointments"] if context else []),
    ]
    prompt = follow_up_prompt(patient, Persona.of(persona), quiet_days=days, context=context)
    deadline = time.monotonic() + settings.LLM_TIMEOUT_SECONDS + 5
    text, reason, completion = "", "", None
    try:
        completion = complete(prompt, deadline=deadline)
        text, reason = checked_text(completion.text, completion.finish_reason)
    except LlmUnavailable as exc:
        reason = exc.reason
    return _finish(follow_up.pk, text, reason, completion, used)


def _finish(follow_up_id: int, text: str, reason: str, completion, used: list[str]) -> str:
    with transaction.atomic():
        follow_up = (
            FollowUp.objects.select_for_update()
            .select_related("patient")
            .filter(pk=follow_up_id, status=FollowUpStatus.WRITING)
            .first()
        )
        if follow_up is None:
            return "already done"
        common = {
            "patient": follow_up.patient,
            "starts_at": max(follow_up.due_at, timezone.now()),
            "kind": MessageKind.FOLLOW_UP,
        }
        try:
            message = schedule_written(text, template="follow_up", **common)
        except ValidationError as exc:
            follow_up.status = FollowUpStatus.SKIPPED
            follow_up.fallback_reason = "; ".join(exc.messages)[:64]
            follow_up.save(update_fields=["status", "fallback_reason"])
            metrics.follow_up_finished("skipped")
            return "skipped"
        follow_up.status, follow_up.message = FollowUpStatus.SCHEDULED, message
        follow_up.sent_at = message.next_run_at
        record_writing(follow_up, text=text, reason=reason, completion=completion)
        follow_up.context_used = used if completion is not None or text else []
        follow_up.save()
        metrics.follow_up_finished(follow_up.source)
    logger.info(
        "follow-up %s of patient %s scheduled (%s)",
        follow_up.pk,
        follow_up.patient_id,
        follow_up.source,
    )
    return follow_up.source


# -- answers --------------------------------------------------------------------------


def note_patient_wrote(patient_id: int, now: datetime | None = None) -> int:
    """Marks the follow-ups the patient answered by writing now: those sent within the
    last FOLLOW_UP_RESPONSE_HOURS and not answered yet."""
    now = now or timezone.now()
    since = now - timedelta(hours=settings.FOLLOW_UP_RESPONSE_HOURS)
    return FollowUp.objects.filter(
        patient_id=patient_id,
        status=FollowUpStatus.SCHEDULED,
        responded_at__isnull=True,
        sent_at__gte=since,
        sent_at__lte=now,
    ).update(responded_at=now)


def response_rate(organization_id: int, *, days: int = 30) -> tuple[int, int]:
    """(answered, sent) follow-ups of the organization in the last `days`, those still
    inside their answer period left out."""
    now = timezone.now()
    counted = FollowUp.objects.filter(
        patient__organization_id=organization_id,
        status=FollowUpStatus.SCHEDULED,
        sent_at__gte=now - timedelta(days=days),
        sent_at__lte=now - timedelta(hours=settings.FOLLOW_UP_RESPONSE_HOURS),
    ).aggregate(sent=Count("pk"), answered=Count("pk", filter=Q(responded_at__isnull=False)))
    return counted["answered"], counted["sent"]
