"""The patient's web inbox: messages readable behind a per-patient signed link.

The link carries the patient id signed with the site's secret key (django.core.signing)
and a per-purpose salt, so it cannot be guessed or changed to another patient's. It
does not expire: it is the patient's own address for their inbox, like a bookmark.
"""

import nh3
from django.core import signing
from django.urls import reverse

from channels_app.content import TELEGRAM_TAGS
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


def safe_html(body: str, fmt: str) -> str:
    """What the inbox page may show as HTML: the Telegram tags, links only to http(s)."""
    if fmt != "html":
        return nh3.clean_text(body).replace("\n", "<br>")
    return nh3.clean(body, tags=set(TELEGRAM_TAGS), attributes={"a": {"href"}},
                     url_schemes={"http", "https", "mailto", "tel"})  # fmt: skip
