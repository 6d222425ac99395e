"""Whose address is this, and may we write to it.

A contact is used for messages only once it is verified, in one of two ways, each kept
with the contact (`verified_via`):
- the patient opened their Telegram link (patients.linking): the chat is theirs;
- the care team confirmed it (admin or API), recorded with who and when: someone checked
  with the patient that the phone number or e-mail address is theirs.
Nothing else sets it: the API's `verified` is read-only, and a changed address is
unverified again. An unverified contact may still say STOP; nothing else it says is read.

One address may belong to patients of several organizations (the same person in two
clinics, a carer's phone), so no clinic is ever told that an address is "in use"
elsewhere. Within one organization it belongs to one patient. What comes in from an
address acts for every patient it belongs to when the patient says STOP, and otherwise
for the patient whose contact there was verified last (`acting_contact`).
"""

import logging

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from patients.audit import record_action
from patients.models import Contact, VerifiedVia

logger = logging.getLogger(__name__)

TAKEN_IN_ORGANIZATION = "Another patient of this clinic has this {channel} address."


def contacts_at(channel: str, address: str) -> list[Contact]:
    """Every contact at the address, the most recently verified first, unverified last."""
    found = Contact.objects.select_related("patient").at(channel, address)
    return list(found.order_by(F("verified_at").desc(nulls_last=True), "-id"))


def acting_contact(contacts: list[Contact]) -> Contact | None:
    """The contact that speaks for the address: the one verified last."""
    return next((contact for contact in contacts if contact.verified_at is not None), None)


def address_taken_in_organization(
    *, organization_id: int, channel: str, address: str, patient_id: int | None
) -> bool:
    """Whether another patient of the organization has the address. Only the user's own
    organization is looked at: another clinic's patients stay out of the answer."""
    others = Contact.objects.at(channel, address).filter(patient__organization_id=organization_id)
    if patient_id is not None:
        others = others.exclude(patient_id=patient_id)
    return others.exists()


@transaction.atomic
def contact_confirm(contact: Contact, *, actor) -> bool:
    """The care team says the address is the patient's: recorded with who and when. False
    when it was verified already (the earlier record stays)."""
    if contact.verified_at is not None:
        return False
    contact.verified_at = timezone.now()
    contact.verified_via = VerifiedVia.CARE_TEAM
    contact.verified_by = actor if actor is not None and actor.is_authenticated else None
    contact.save(update_fields=["verified_at", "verified_via", "verified_by"])
    record_action(contact.patient, "contact_confirmed", actor=actor, contact=contact.pk)
    logger.info("contact %s confirmed by user %s", contact.pk, getattr(actor, "pk", None))
    return True


def contact_unverify(contact: Contact) -> None:
    """Forget the verification (on an unsaved change): a new address is not verified."""
    contact.verified_at = None
    contact.verified_via = ""
    contact.verified_by = None
