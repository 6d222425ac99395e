"""The patient's web inbox link: messages readable behind a per-patient signed link.

The link carries the patient id signed with the site's secret key (django.core.signing)
and a per-purpose salt, so it cannot be guessed or changed to another patient's. It
does not expire: it is the patient's own address for their inbox, like a bookmark.
"""

from django.core import signing
from django.urls import reverse

from patients.models import Patient

_SALT = "companion.patient-inbox"


def inbox_token(patient: Patient) -> str:
    return signing.dumps(patient.pk, salt=_SALT)


def inbox_path(patient: Patient) -> str:
    return reverse("patient-inbox", args=[inbox_token(patient)])


def patient_for_token(token: str) -> Patient | None:
    try:
        patient_id = signing.loads(token, salt=_SALT)
    except signing.BadSignature:
        return None
    return Patient.objects.filter(pk=patient_id).first()
