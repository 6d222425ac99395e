"""Keeps each check-in plan's next moment (its indexed `next_at`) true: on any change of
the plan, or of the patient's time zone or quiet hours, and for a new patient of an
organization whose companion starts check-ins for new patients. Every new patient gets
their follow-up state, looked at first when they have been quiet long enough."""

from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models.signals import post_save, pre_save
from django.utils import timezone

from outreach.models import CheckInPlan, CompanionPersona, FollowUpState
from outreach.moments import next_check_in
from outreach.weather import geocode
from patients.models import Patient


def follow_up_delay() -> timedelta:
    return timedelta(hours=settings.FOLLOW_UP_DEFAULT_DELAY_HOURS)


def refresh_next_at(plan: CheckInPlan) -> None:
    if not plan.enabled:
        plan.next_at = None
        return
    plan.next_at = next_check_in(plan, plan.patient, after=timezone.now())[1]


def fill_in_coordinates(fields: dict) -> str:
    """A place name given without coordinates is looked up once (only the name leaves)
    and its coordinates are filled in; returns why not when it cannot be found."""
    place = (fields.get("place_name") or "").strip()
    if place and fields.get("latitude") is None and fields.get("longitude") is None:
        found = geocode(place)
        if found is None:
            return "This place was not found; give its latitude and longitude instead."
        fields["latitude"], fields["longitude"] = found
    return ""


def plan_check_ins_for(patient: Patient, **fields) -> CheckInPlan:
    """The patient's plan, created or changed; its next moment follows."""
    plan = CheckInPlan.objects.filter(patient=patient).first() or CheckInPlan(patient=patient)
    for name in ("latitude", "longitude"):
        if fields.get(name) not in (None, ""):
            # Four places (about 10 m) are kept; the weather service gets one (10 km).
            fields[name] = Decimal(str(fields[name])).quantize(Decimal("0.0001"))
    for name, value in fields.items():
        setattr(plan, name, value)
    plan.full_clean()
    plan.save()
    return plan


def _plan_saved(sender, instance: CheckInPlan, **kwargs) -> None:
    if instance.enabled:
        instance.stopped_reason = ""  # switched on again: the old reason no longer holds
    refresh_next_at(instance)


def _patient_saved(sender, instance: Patient, created: bool, **kwargs) -> None:
    if created:
        FollowUpState.objects.get_or_create(
            patient=instance, defaults={"next_at": instance.created_at + follow_up_delay()}
        )
        persona = CompanionPersona.objects.filter(organization_id=instance.organization_id).first()
        if persona and persona.check_ins_for_new_patients:
            CheckInPlan.objects.create(patient=instance)
        return
    plan = CheckInPlan.objects.filter(patient=instance).first()
    if plan is not None:
        plan.patient = instance
        refresh_next_at(plan)
        CheckInPlan.objects.filter(pk=plan.pk).update(next_at=plan.next_at)


def connect() -> None:
    pre_save.connect(_plan_saved, sender=CheckInPlan, dispatch_uid="outreach.plan_saved")
    post_save.connect(_patient_saved, sender=Patient, dispatch_uid="outreach.patient_saved")
