"""The patient's web inbox link: /inbox/<token>/, where their messages can be read.

The token is a random secret (secrets.token_urlsafe(32), 256 bits); only its SHA-256 is
stored (InboxLink), so the table alone opens no inbox, and being random it needs no salt.
A patient has at most one live link: issuing a new one (the care team in the admin, or
the patient with the bot's `inbox` command) ends the older ones. A link ends after
INBOX_LINK_DAYS, when the care team revokes it, and when the patient is deactivated.
An ended link opens nothing; the page asks the patient to get a new one.
"""

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from patients.audit import record_action
from patients.models import InboxLink, Patient

logger = logging.getLogger(__name__)

MAX_TOKEN_LENGTH = 64  # token_urlsafe(32) is 43 characters; anything much longer is not one


@dataclass(frozen=True)
class IssuedInboxLink:
    token: str  # shown once; only its hash is kept
    path: str
    expires_at: datetime


def inbox_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def inbox_path(token: str) -> str:
    return reverse("patient-inbox", args=[token])


@transaction.atomic
def inbox_link_issue(*, patient: Patient, actor=None) -> IssuedInboxLink:
    """A new link for the patient; their older links stop working."""
    if patient.deactivated_at is not None:
        raise ValidationError({"patient": "The patient is deactivated: no inbox link."})
    now = timezone.now()
    _revoke(patient, now)
    token = secrets.token_urlsafe(32)
    expires_at = now + timedelta(days=settings.INBOX_LINK_DAYS)
    row = InboxLink.objects.create(
        patient=patient,
        token_hash=inbox_token_hash(token),
        expires_at=expires_at,
        created_by=actor if actor is not None and actor.is_authenticated else None,
    )
    record_action(patient, "inbox_link_issued", actor=actor, inbox_link=row.pk)
    logger.info("inbox link %s issued for patient %s", row.pk, patient.pk)
    return IssuedInboxLink(token=token, path=inbox_path(token), expires_at=expires_at)


@transaction.atomic
def inbox_links_revoke(*, patient: Patient, actor=None) -> int:
    """Ends the patient's live links; how many there were."""
    revoked = _revoke(patient, timezone.now())
    if revoked:
        record_action(patient, "inbox_link_revoked", actor=actor, count=revoked)
        logger.info("%d inbox link(s) of patient %s revoked", revoked, patient.pk)
    return revoked


def _revoke(patient: Patient, now: datetime) -> int:
    live = InboxLink.objects.filter(patient=patient, revoked_at__isnull=True, expires_at__gt=now)
    return live.update(revoked_at=now)


def patient_for_inbox_token(token: str) -> Patient | None:
    """The patient whose live link this is; None for an unknown, ended or revoked link,
    or a deactivated patient."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    link = (
        InboxLink.objects.select_related("patient")
        .filter(token_hash=inbox_token_hash(token), revoked_at__isnull=True)
        .filter(expires_at__gt=timezone.now(), patient__deactivated_at__isnull=True)
        .first()
    )
    return link.patient if link is not None else None


def inbox_link_state(patient: Patient) -> InboxLink | None:
    """The patient's live link, for the care team to see when it ends (never its token)."""
    return (
        InboxLink.objects.filter(
            patient=patient, revoked_at__isnull=True, expires_at__gt=timezone.now()
        )
        .order_by("-created_at")
        .first()
    )
