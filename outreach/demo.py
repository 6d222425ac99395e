"""The demo clinic's companion: a persona and daily check-ins for the demo patients, the
first due a minute or two after start-up (once per local date, as always)."""

from datetime import timedelta
from zoneinfo import ZoneInfo

from django.utils import timezone

from outreach.models import CheckInPlan, CompanionPersona
from outreach.plans import plan_check_ins_for
from patients.models import Organization


def start_demo_check_ins(organization: Organization) -> list[CheckInPlan]:
    CompanionPersona.objects.get_or_create(
        organization=organization,
        defaults={"companion_name": "Mia", "support_style": "warm and encouraging"},
    )
    plans = []
    for number, patient in enumerate(organization.patients.order_by("id")):
        moment = timezone.now() + timedelta(seconds=70 + 20 * number)
        local = moment.astimezone(ZoneInfo(patient.timezone)).time().replace(microsecond=0)
        # Berlin for the weather: coordinates, so that no place name has to be looked up.
        plans.append(
            plan_check_ins_for(
                patient, enabled=True, local_time=local, latitude="52.52", longitude="13.40"
            )
        )
    return plans
