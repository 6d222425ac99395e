"""Who the companion may write to on its own initiative, for check-ins and follow-ups."""

from outreach.models import CompanionPersona
from patients.models import Contact, Patient


def reason_not_to_reach(patient: Patient) -> tuple[str, str]:
    """(why not today, why never again until someone changes something); both empty: go
    ahead. A patient without any contact is reached through the web inbox."""
    if patient.opted_out_at is not None:
        return "the patient opted out", ""
    if not patient.onboarding_done:
        return "onboarding is not done", ""
    contacts = list(Contact.objects.filter(patient=patient).values_list("blocked_at", flat=True))
    if contacts and all(blocked is not None for blocked in contacts):
        return "", "the patient blocked us on every channel they had"
    return "", ""


def personas_of(organization_ids: set[int]) -> dict[int, CompanionPersona]:
    """The organizations' companion personas, by organization id (one query)."""
    found = CompanionPersona.objects.filter(organization_id__in=organization_ids)
    return {persona.organization_id: persona for persona in found}
