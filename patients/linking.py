"""Connecting a Telegram chat to a patient with a one-time link from the care team.

The care team creates a token (admin action, or link_token_create from code) and gives
the patient https://t.me/<bot>?start=<token>, as a link or a QR code. Opening it sends
"/start <token>" to the bot, which makes that chat the patient's verified Telegram
contact (one of the two ways a contact becomes verified, see patients.contacts). Only a
SHA-256 hash of the token is stored, so the table alone links nothing; the token is
random (192 bits), so the hash needs no salt. A new token replaces the patient's unused
older ones.
"""

import hashlib
import io
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import segno
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from patients.audit import record_action
from patients.models import Channel, Contact, LinkToken, Patient, VerifiedVia

logger = logging.getLogger(__name__)


class LinkOutcome(StrEnum):
    LINKED = "linked"
    ALREADY_LINKED = "already_linked"
    EXPIRED = "link_expired"
    USED = "link_used"
    INVALID = "link_invalid"
    OTHER_PATIENT = "link_other_patient"


@dataclass(frozen=True)
class IssuedLink:
    token: str  # shown once; only its hash is kept
    url: str  # empty when TELEGRAM_BOT_USERNAME is not set
    expires_at: datetime


@dataclass(frozen=True)
class LinkResult:
    outcome: LinkOutcome
    patient: Patient | None = None  # set when the answer may use the patient's language


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def link_url(token: str) -> str:
    username = settings.TELEGRAM_BOT_USERNAME
    return f"https://t.me/{username}?start={token}" if username else ""


@transaction.atomic
def link_token_create(*, patient: Patient, actor=None) -> IssuedLink:
    now = timezone.now()
    # Only the newest link works: an older one handed out by mistake stops working.
    LinkToken.objects.filter(patient=patient, used_at__isnull=True, expires_at__gt=now).update(
        expires_at=now
    )
    token = secrets.token_urlsafe(24)  # 32 characters of [A-Za-z0-9_-], as t.me allows
    expires_at = now + timedelta(hours=settings.LINK_TOKEN_TTL_HOURS)
    row = LinkToken.objects.create(
        patient=patient,
        token_hash=token_hash(token),
        expires_at=expires_at,
        created_by=actor if actor is not None and actor.is_authenticated else None,
    )
    record_action(patient, "telegram_link_created", actor=actor, link_token=row.pk)
    logger.info("link token %s created for patient %s", row.pk, patient.pk)
    return IssuedLink(token=token, url=link_url(token), expires_at=expires_at)


def link_qr_svg(url: str) -> str:
    """An inline SVG QR code of the link, for the admin page."""
    return segno.make(url, error="m").svg_inline(scale=4)


def link_qr_png(url: str) -> bytes:
    """The QR code as a PNG, for printing or a letter."""
    out = io.BytesIO()
    segno.make(url, error="m").save(out, kind="png", scale=8)
    return out.getvalue()


@transaction.atomic
def link_chat(*, token: str, chat_id: str) -> LinkResult:
    """Makes the chat the token's patient's verified Telegram contact, once."""
    now = timezone.now()
    row = (
        LinkToken.objects.select_for_update()
        .select_related("patient")
        .filter(token_hash=token_hash(token))
        .first()
    )
    if row is None:
        return LinkResult(LinkOutcome.INVALID)
    patient = row.patient
    # Within the patient's organization only: a chat may belong to patients of several
    # clinics (patients.contacts), and another clinic's are none of this link's business.
    existing = (
        Contact.objects.at(Channel.TELEGRAM, chat_id)
        .filter(patient__organization_id=patient.organization_id)
        .first()
    )
    if existing is not None and existing.patient_id != patient.pk:
        logger.warning("link token %s refused: the chat is another patient's", row.pk)
        return LinkResult(LinkOutcome.OTHER_PATIENT, patient)
    if row.used_at is not None:
        same_chat = existing is not None and row.contact_id == existing.pk
        return LinkResult(LinkOutcome.ALREADY_LINKED if same_chat else LinkOutcome.USED, patient)
    if row.expires_at <= now:
        return LinkResult(LinkOutcome.EXPIRED, patient)
    contact = _telegram_contact(patient, chat_id, existing, now)
    # Linking is the patient answering the welcome: the companion may start checking in.
    Patient.objects.filter(pk=patient.pk).update(onboarding_done=True)
    patient.onboarding_done = True
    row.used_at, row.contact = now, contact
    row.save(update_fields=["used_at", "contact"])
    record_action(patient, "telegram_linked", link_token=row.pk, contact=contact.pk)
    logger.info("patient %s linked to telegram contact %s (token %s)", patient.pk, contact.pk,
                row.pk)  # fmt: skip
    return LinkResult(LinkOutcome.LINKED, patient)


def _telegram_contact(
    patient: Patient, chat_id: str, existing: Contact | None, now: datetime
) -> Contact:
    """The patient keeps one Telegram contact: a new chat (a new phone) replaces the old
    one, so reminders follow the patient to where they linked last."""
    contact = existing or patient.contacts.filter(channel=Channel.TELEGRAM).order_by("id").first()
    if contact is None:
        contact = Contact(patient=patient, channel=Channel.TELEGRAM)
    contact.address = chat_id
    contact.verified_at = now
    contact.verified_via = VerifiedVia.TELEGRAM_LINK
    contact.verified_by = None
    contact.blocked_at = None
    contact.blocked_reason = ""
    contact.save()
    patient.contacts.filter(channel=Channel.TELEGRAM).exclude(pk=contact.pk).delete()
    preferred = patient.contacts.filter(
        channel=patient.preferred_channel, verified_at__isnull=False, blocked_at__isnull=True
    )
    if not preferred.exists():
        # Linking Telegram says where the patient wants their reminders, unless their
        # preferred channel reaches them already.
        Patient.objects.filter(pk=patient.pk).update(preferred_channel=Channel.TELEGRAM)
        patient.preferred_channel = Channel.TELEGRAM
    return contact
