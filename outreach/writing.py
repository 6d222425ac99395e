"""Writes a check-in: the language model's text when it comes in time and passes the
guardrails, else the organization's check-in template. Either way the check-in becomes
a one-time scheduled message, sent through the normal path (delivery, attempts, rate
limits, retries, breaker, blocked handling), and records which path wrote it and why.

Runs on the outreach queue's own workers shortly before the check-in is due, so a slow
model never holds a delivery worker; a check-in still unwritten at its moment plus
CHECK_IN_GRACE_SECONDS is finished with the fallback by the planner's sweep.
"""

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from outreach import metrics
from outreach.companion_messages import record_writing, schedule_written
from outreach.guardrails import checked_text
from outreach.llm import Completion, LlmUnavailable, complete
from outreach.models import CheckIn, CheckInStatus, CompanionPersona
from outreach.prompts import Persona, check_in_prompt, patient_context
from outreach.weather import current_weather
from scheduling.models import MessageKind

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Written:
    text: str  # empty: the fallback template
    reason: str = ""  # why the fallback
    completion: Completion | None = None
    with_weather: bool = False
    with_context: bool = False


def write_check_in(check_in_id: int) -> str:
    """Returns what became of it: "llm", "fallback" or "already done"."""
    check_in = (
        CheckIn.objects.select_related("patient", "patient__check_in_plan").filter(pk=check_in_id)
    ).first()
    if check_in is None or check_in.status != CheckInStatus.WRITING:
        return "already done"
    deadline_at = check_in.due_at + timedelta(seconds=settings.CHECK_IN_GRACE_SECONDS)
    written = _write(
        check_in, deadline=time.monotonic() + (deadline_at - timezone.now()).total_seconds()
    )
    return finish_check_in(check_in.pk, written)


def _write(check_in: CheckIn, *, deadline: float) -> Written:
    patient = check_in.patient
    persona = CompanionPersona.objects.filter(organization_id=patient.organization_id).first()
    plan = patient.check_in_plan
    weather = None
    if plan.latitude is not None and plan.longitude is not None:
        found = current_weather(plan.latitude, plan.longitude)
        weather = found.describe() if found else None
    sharing = bool(persona and persona.share_context_with_llm)
    context = patient_context(patient, timezone.now()) if sharing else []
    prompt = check_in_prompt(patient, Persona.of(persona), weather=weather, context=context)
    used = {"with_weather": weather is not None, "with_context": bool(context)}
    try:
        completion = complete(prompt, deadline=deadline)
    except LlmUnavailable as exc:
        return Written("", exc.reason, **used)
    text, refused = checked_text(completion.text, completion.finish_reason)
    return Written(text, refused, completion, **used)


def finish_check_in(check_in_id: int, written: Written) -> str:
    """Schedules the check-in's message, once: whoever finishes first (the writer or the
    sweep) wins, under the row's lock."""
    with transaction.atomic():
        check_in = (
            CheckIn.objects.select_for_update()
            .select_related("patient")
            .filter(pk=check_in_id, status=CheckInStatus.WRITING)
            .first()
        )
        if check_in is None:
            return "already done"
        now = timezone.now()
        if now >= check_in.window_ends_at:
            return _skip(check_in, "its window passed before it was written")
        starts_at = max(check_in.due_at, now)
        common = {
            "patient": check_in.patient,
            "starts_at": starts_at,
            "kind": MessageKind.CHECK_IN,
            "delivery_window_seconds": max(
                60, int((check_in.window_ends_at - starts_at).total_seconds())
            ),
        }
        try:
            message = schedule_written(written.text, template="check_in", **common)
        except ValidationError as exc:
            # For example a patient who opted out since the check-in was planned.
            return _skip(check_in, "; ".join(exc.messages)[:200])
        check_in.status, check_in.message = CheckInStatus.SCHEDULED, message
        record_writing(
            check_in, text=written.text, reason=written.reason, completion=written.completion
        )
        check_in.with_weather, check_in.with_context = written.with_weather, written.with_context
        check_in.save()
        source = check_in.source
        metrics.check_in_finished(source)
    logger.info(
        "check-in %s of patient %s scheduled (%s%s)",
        check_in.pk,
        check_in.patient_id,
        source,
        f": {check_in.fallback_reason}" if check_in.fallback_reason else "",
    )
    return source


def _skip(check_in: CheckIn, reason: str) -> str:
    check_in.status, check_in.fallback_reason = CheckInStatus.SKIPPED, reason[:64]
    check_in.save(update_fields=["status", "fallback_reason", "updated_at"])
    metrics.check_in_finished("skipped")
    logger.info("check-in %s of patient %s skipped: %s", check_in.pk, check_in.patient_id, reason)
    return "skipped"


def finish_late_check_ins(now: datetime | None = None) -> int:
    """Check-ins whose text did not come by their moment plus the grace get the fallback,
    all of them, a batch at a time."""
    now = now or timezone.now()
    late = CheckIn.objects.filter(
        status=CheckInStatus.WRITING,
        due_at__lt=now - timedelta(seconds=settings.CHECK_IN_GRACE_SECONDS),
    ).order_by("due_at")
    finished = 0
    while batch := list(late.values_list("pk", flat=True)[:500]):
        for pk in batch:
            finish_check_in(pk, Written("", "llm_too_slow"))
        finished += len(batch)
    return finished
