"""Encryption at rest for what a stolen database or backup would reveal about patients.

Field-level, with cryptography's MultiFernet (AES-128-CBC with HMAC-SHA256, a random IV
per value). FIELD_ENCRYPTION_KEYS lists Fernet keys, newest first: the first encrypts,
every one decrypts, so a new key is put in front, `manage.py rotate_encryption_key`
re-encrypts every row with it while the system runs, and the old key is then dropped.

Why our own thirty lines instead of a fields package: the maintained ones derive their
keys from SECRET_KEY (rotating that, as one must after a leak, would make every row
unreadable) or keep one key with no rotation.

A stored value starts with "enc1:"; a value without it is a row written before
encryption was switched on and is read as it is, until the rotation command rewrites it.

Addresses must still be looked up (an inbound message names its sender's chat id or
phone number): `blind_index` is a keyed hash (HMAC-SHA256 with BLIND_INDEX_KEY, a key of
its own that never rotates with the encryption keys) stored beside the ciphertext and
used for lookups, uniqueness and Redis key names.
"""

import hashlib
import hmac
import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

PREFIX = "enc1:"

_fernets: dict[tuple[str, ...], MultiFernet] = {}


def _fernet() -> MultiFernet:
    keys = tuple(settings.FIELD_ENCRYPTION_KEYS)
    if keys not in _fernets:
        try:
            _fernets[keys] = MultiFernet([Fernet(key) for key in keys])
        except ValueError as exc:
            raise ImproperlyConfigured(
                "FIELD_ENCRYPTION_KEYS holds a key that is not a Fernet key (32 url-safe "
                "base64-encoded bytes; make one with `manage.py rotate_encryption_key --new-key`)."
            ) from exc
    return _fernets[keys]


def is_encrypted(stored: str) -> bool:
    return stored.startswith(PREFIX)


def encrypt_text(text: str) -> str:
    if not settings.FIELD_ENCRYPTION_ENABLED:
        return text
    return PREFIX + _fernet().encrypt(text.encode()).decode("ascii")


def decrypt_text(stored: str) -> str:
    if not is_encrypted(stored):
        return stored
    try:
        return _fernet().decrypt(stored[len(PREFIX) :].encode("ascii")).decode()
    except InvalidToken as exc:
        raise ImproperlyConfigured(
            "A stored value cannot be decrypted with any key in FIELD_ENCRYPTION_KEYS: a key "
            "still in use was removed before `manage.py rotate_encryption_key` finished."
        ) from exc


def reencrypt_text(stored: str) -> str:
    """The value encrypted with the newest key (a plain-text row gets encrypted)."""
    return encrypt_text(decrypt_text(stored))


def encrypt_bytes(data: bytes) -> bytes:
    """A whole file (an attachment), encrypted with the newest key."""
    return PREFIX.encode() + _fernet().encrypt(data)


def decrypt_bytes(stored: bytes) -> bytes:
    if not stored.startswith(PREFIX.encode()):
        return stored
    try:
        return _fernet().decrypt(stored[len(PREFIX) :])
    except InvalidToken as exc:
        raise ImproperlyConfigured(
            "A stored file cannot be decrypted with any key in FIELD_ENCRYPTION_KEYS."
        ) from exc


def encrypt_json(value) -> str:
    return encrypt_text(json.dumps(value, separators=(",", ":")))


def decrypt_json(stored: str):
    return json.loads(decrypt_text(stored))


def blind_index(*parts: str) -> str:
    """A keyed hash of an address (with its channel), for lookups and key names: equal
    inputs give equal outputs, and without BLIND_INDEX_KEY nobody can test a guess."""
    message = "\x1f".join(parts).encode()
    return hmac.new(settings.BLIND_INDEX_KEY.encode(), message, hashlib.sha256).hexdigest()


def address_hash(channel: str, address: str) -> str:
    """How a contact's address is looked up (Contact.address_hash)."""
    return blind_index(channel, address.strip())


def new_key() -> str:
    return Fernet.generate_key().decode("ascii")


def audit_mask(value: str) -> str:
    """What the audit trail keeps of an encrypted field: that it changed, not the text
    (django-auditlog's own mask keeps half of it)."""
    return "(not kept)"
