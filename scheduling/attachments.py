"""The file that goes with a message: checked for its channel when the message is written,
stored through Django's storage API (STORAGES["attachments"]), read back for each send.

Stored encrypted when FIELD_ENCRYPTION_ENABLED is on: Fernet over the whole file with the
keys of patients/encryption.py, so a copied bucket or disk reveals no more than a copied
database. The file is written before its row; if the row cannot be written the file is
deleted again, so a refused or failed creation leaves nothing behind; a deleted row takes
its file along (delete_file_with_its_row).

Providers that fetch media themselves (Twilio's MMS) get a signed address on this site,
valid for ATTACHMENT_LINK_HOURS, served by conversations.views after checking the
signature; no file is ever at a public address of its own.
"""

import hashlib
import logging
from dataclasses import dataclass
from functools import partial

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import models, transaction
from django.urls import reverse

from channels_app import attachments as media
from channels_app.formatting import to_plain_text
from patients.encryption import PREFIX, decrypt_bytes, encrypt_bytes
from scheduling.models import Attachment, ScheduledMessage, attachment_path

logger = logging.getLogger(__name__)

_LINK_SALT = "scheduling.attachment-link"
# Twilio's 1,600 characters, less room for the link an SMS carries where MMS does not go
# (PUBLIC_BASE_URL, /media/ and a signed token of about 50 characters).
SMS_LENGTH, SMS_LINK_ROOM = 1600, 200


@dataclass(frozen=True)
class Upload:
    """A file as a surface received it."""

    data: bytes
    name: str = ""
    kind: str = ""  # empty: from its type (image: photo, audio: voice, else document)


def attachment_check(
    channel: str, upload: Upload, content: str = "", fmt: str = "text"
) -> media.CheckedFile:
    """The file's kind, type and size if the channel takes it; a ValidationError naming
    the limit otherwise."""
    checked = media.check_attachment(channel, upload.data, upload.kind)
    longest = SMS_LENGTH - SMS_LINK_ROOM
    if channel == "sms" and len(to_plain_text(content, fmt)) > longest:
        raise ValidationError(
            {
                "content": f"With an attachment an SMS may have at most {longest} characters: "
                "where MMS does not reach, the file's link is written after the text."
            }
        )
    if channel == "sms" and not settings.PUBLIC_BASE_URL:
        raise ValidationError(
            {
                "attachment": "An SMS attachment needs PUBLIC_BASE_URL: Twilio fetches the file "
                "from this site."
            }
        )
    return checked


def attachment_save(message: ScheduledMessage, upload: Upload, checked: media.CheckedFile):
    """Stores the file, then its row (the caller's transaction); the file goes again if
    the row fails."""
    encrypted = settings.FIELD_ENCRYPTION_ENABLED
    row = Attachment(
        message=message,
        kind=checked.kind,
        content_type=checked.content_type,
        size=checked.size,
        sha256=hashlib.sha256(upload.data).hexdigest(),
        original_name=upload.name[:255],
        encrypted=encrypted,
    )
    stored = encrypt_bytes(upload.data) if encrypted else upload.data
    storage = _storage()
    row.file.name = storage.save(attachment_path(row, ""), ContentFile(stored))
    try:
        row.save()
    except BaseException:
        storage.delete(row.file.name)
        raise
    logger.info("message %s: %s attachment %s stored", message.pk, checked.kind, row.pk)
    return row


def attachment_recheck(message: ScheduledMessage) -> None:
    """A message's stored file against its channel and text as they are now (a change of
    channel or text): the checks of its creation, a ValidationError naming the limit."""
    row = message_attachment(message)
    if row is not None:
        upload = Upload(attachment_bytes(row), kind=row.kind)
        attachment_check(message.channel, upload, message.content, message.format)


def _storage():
    # Looked up on each use, not the storage the model field was given at import: the
    # STORAGES setting decides (and tests give each test a folder of its own).
    return storages["attachments"]


def attachment_bytes(row: Attachment) -> bytes:
    with _storage().open(row.file.name, "rb") as handle:
        stored = handle.read()
    return decrypt_bytes(stored) if row.encrypted else stored


def delete_file_with_its_row(sender, instance: Attachment, **kwargs) -> None:
    """post_delete of an Attachment, however it goes (its message, patient or clinic
    deleted in the admin, a cascade): its file goes too, once the deletion is committed,
    so a rolled-back deletion keeps it. A photo of a wound must not outlive its record.
    Our own few lines rather than django-cleanup: the file's storage is the one STORAGES
    names now, not the one the model field was given at import (see _storage)."""
    name = instance.file.name
    if name:
        transaction.on_commit(partial(_delete_stored_file, instance.pk, name))


def _delete_stored_file(attachment_id: int, name: str) -> None:
    try:
        _storage().delete(name)
    except Exception:
        # The row is gone either way; a file left behind is named by id for the operator.
        logger.exception("attachment %s: its file could not be deleted", attachment_id)


def message_attachment(message: ScheduledMessage) -> Attachment | None:
    try:
        return message.attachment
    except Attachment.DoesNotExist:
        return None


def attachment_for_sending(row: Attachment, channel: str, address: str) -> media.Attachment:
    """The attachment as an adapter takes it; a signed address only where a provider
    fetches it or the patient gets a link (SMS)."""
    url = attachment_link(row) if channel == "sms" and settings.PUBLIC_BASE_URL else ""
    return media.Attachment(
        kind=row.kind,
        content_type=row.content_type,
        size=row.size,
        read=lambda: attachment_bytes(row),
        url=url,
    )


def attachment_link(row: Attachment) -> str:
    token = signing.TimestampSigner(salt=_LINK_SALT).sign(str(row.pk))
    return settings.PUBLIC_BASE_URL + reverse("attachment-link", args=[token])


def attachment_from_link(token: str) -> Attachment | None:
    """The attachment a signed address names, while it is valid; None otherwise."""
    max_age = settings.ATTACHMENT_LINK_HOURS * 3600
    try:
        pk = signing.TimestampSigner(salt=_LINK_SALT).unsign(token, max_age=max_age)
    except signing.BadSignature:
        return None
    return Attachment.objects.filter(pk=int(pk)).first()


def attachments_of_deliveries(delivery_ids: list[int]) -> dict[int, Attachment]:
    """The attachment each delivery carried, by delivery id (those with none left out)."""
    rows = Attachment.objects.filter(message__deliveries__in=delivery_ids).annotate(
        delivery_id=models.F("message__deliveries__id")
    )
    return {row.delivery_id: row for row in rows}


def attachments_reencrypt() -> tuple[int, int]:
    """Rewrites every attachment file with the newest key of FIELD_ENCRYPTION_KEYS (and
    encrypts files stored before encryption was on): (rewritten, already so). A new file
    is written, then the row is pointed at it only if it still names the old one, then
    the old file goes; a run stopped midway leaves at most one unused file."""
    newest = Fernet(settings.FIELD_ENCRYPTION_KEYS[0])
    storage = _storage()
    rewritten = already = 0
    for row in Attachment.objects.order_by("pk").iterator():
        with storage.open(row.file.name, "rb") as handle:
            stored = handle.read()
        if row.encrypted and _opens(newest, stored):
            already += 1
            continue
        plain = decrypt_bytes(stored) if row.encrypted else stored
        old_name = row.file.name
        new_name = storage.save(attachment_path(row, ""), ContentFile(encrypt_bytes(plain)))
        moved = Attachment.objects.filter(pk=row.pk, file=old_name).update(
            file=new_name, encrypted=True
        )
        storage.delete(old_name if moved else new_name)
        rewritten += bool(moved)
    logger.info("attachments re-encrypted: %d, already with the newest key: %d", rewritten, already)
    return rewritten, already


def _opens(fernet: Fernet, stored: bytes) -> bool:
    try:
        fernet.decrypt(stored.removeprefix(PREFIX.encode()))
    except InvalidToken:
        return False
    return stored.startswith(PREFIX.encode())
