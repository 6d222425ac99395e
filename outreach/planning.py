"""Every tick: the check-ins whose moment is near, each written once per local date.

The due plans are read from the partial index check_in_due_idx (next_at, enabled only),
so an idle tick costs the same at a million patients as at a hundred. Each plan found is
moved on to its next moment in the same transaction, eligible or not, so none is read
twice. Two planners at once skip each other's rows (SKIP LOCKED), and a check-in is a
row unique per patient and local date: nothing runs twice into two check-ins.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from outreach.eligibility import personas_of, reason_not_to_reach
from outreach.models import CheckIn, CheckInPlan, CompanionPersona
from outreach.moments import next_check_in, quiet_hours_cover
from scheduling.queueing import publish_task

logger = logging.getLogger(__name__)

WRITE_TASK = "outreach.write_check_in"
PLAN_BATCH = 500


def due_plans(now: datetime, limit: int):
    horizon = now + timedelta(seconds=settings.CHECK_IN_WRITING_LEAD_SECONDS)
    return (
        CheckInPlan.objects.filter(enabled=True, next_at__lte=horizon)
        .order_by("next_at")
        .select_related("patient", "patient__organization")
        .select_for_update(skip_locked=True, of=("self",))[:limit]
    )


def plan_check_ins(*, now: datetime | None = None) -> int:
    """Starts the check-ins due within CHECK_IN_WRITING_LEAD_SECONDS; returns how many."""
    if not settings.CHECK_INS_ENABLED:
        return 0
    now = now or timezone.now()
    started = 0
    while True:
        planned, count = _plan_batch(now)
        started += planned
        if count < PLAN_BATCH:
            return started


@transaction.atomic
def _plan_batch(now: datetime) -> tuple[int, int]:
    plans = list(due_plans(now, PLAN_BATCH))
    personas = personas_of({plan.patient.organization_id for plan in plans})
    started = 0
    for plan in plans:
        started += _plan_one(plan, personas.get(plan.patient.organization_id), now)
    return started, len(plans)


def _plan_one(plan: CheckInPlan, persona: CompanionPersona | None, now: datetime) -> int:
    patient = plan.patient
    day, moment = next_check_in(plan, patient, after=now)
    horizon = now + timedelta(seconds=settings.CHECK_IN_WRITING_LEAD_SECONDS)
    started = 0
    if moment <= horizon:
        skip, stop = reason_not_to_check_in(plan, persona)
        if stop:
            plan.enabled, plan.stopped_reason = False, stop
            logger.warning("check-ins of patient %s stopped: %s", patient.pk, stop)
        elif skip:
            logger.info("check-in of patient %s on %s skipped: %s", patient.pk, day, skip)
        elif quiet_hours_cover(patient, moment, plan.window_minutes):
            logger.info("check-in of patient %s on %s skipped: quiet hours", patient.pk, day)
        else:
            started = _start(plan, day, moment)
        plan.last_local_date = day
        day, moment = next_check_in(plan, patient, after=now)
    plan.next_at = moment
    plan.save(
        update_fields=["enabled", "stopped_reason", "last_local_date", "next_at", "updated_at"]
    )
    return started


def reason_not_to_check_in(plan: CheckInPlan, persona: CompanionPersona | None) -> tuple[str, str]:
    """(why today is skipped, why check-ins stop for good); both empty: go ahead."""
    if persona is not None and not persona.check_ins_enabled:
        return "check-ins are off in the organization", ""
    return reason_not_to_reach(plan.patient)


def _start(plan: CheckInPlan, day, moment: datetime) -> int:
    window = timedelta(minutes=plan.window_minutes)
    check_in, created = CheckIn.objects.get_or_create(
        patient=plan.patient,
        local_date=day,
        defaults={"due_at": moment, "window_ends_at": moment + window},
    )
    if created:
        transaction.on_commit(
            lambda: publish_task(WRITE_TASK, (check_in.pk,), queue=settings.OUTREACH_QUEUE)
        )
    return int(created)
