"""Re-encrypts every encrypted column with the newest key, in small batches, while the
system runs (`manage.py rotate_encryption_key`).

Each batch reads the stored values as they are in the table and writes a row back only
if it still holds what was read (a conditional UPDATE), so a row changed meanwhile by a
worker or a care team keeps its new value, already encrypted with the newest key.
Re-running it is cheap: a value the newest key already opens is skipped.
"""

import logging
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken
from django.apps import apps
from django.conf import settings
from django.db import connection, transaction

from patients.encryption import PREFIX, is_encrypted, reencrypt_text
from patients.fields import EncryptedJSONField, EncryptedTextField

logger = logging.getLogger(__name__)

BATCH = 500


@dataclass
class Rotated:
    table: str
    column: str
    rewritten: int = 0
    already: int = 0


def encrypted_columns() -> list[tuple[str, str, str]]:
    """(table, primary key column, column) of every encrypted field in every app."""
    found = []
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, (EncryptedTextField, EncryptedJSONField)):
                found.append((model._meta.db_table, model._meta.pk.column, field.column))
    return sorted(found)


def _newest_opens(stored: str, newest: Fernet) -> bool:
    if not is_encrypted(stored):
        return False
    try:
        newest.decrypt(stored[len(PREFIX) :].encode("ascii"))
    except InvalidToken:
        return False
    return True


def rotate_column(table: str, key: str, column: str, *, batch: int = BATCH) -> Rotated:
    newest = Fernet(settings.FIELD_ENCRYPTION_KEYS[0])
    result = Rotated(table, column)
    last = 0  # every encrypted model has an integer key
    quote = connection.ops.quote_name
    select = (
        f"SELECT {quote(key)}, {quote(column)} FROM {quote(table)} "  # noqa: S608 - model names
        f"WHERE {quote(column)} IS NOT NULL AND {quote(key)} > %s ORDER BY {quote(key)} LIMIT %s"
    )
    update = (
        f"UPDATE {quote(table)} SET {quote(column)} = %s "  # noqa: S608 - model names
        f"WHERE {quote(key)} = %s AND {quote(column)} = %s"
    )
    while True:
        with connection.cursor() as cursor:
            cursor.execute(select, [last, batch])
            rows = cursor.fetchall()
        if not rows:
            return result
        with transaction.atomic(), connection.cursor() as cursor:
            for pk, stored in rows:
                if _newest_opens(stored, newest):
                    result.already += 1
                    continue
                cursor.execute(update, [reencrypt_text(stored), pk, stored])
                result.rewritten += cursor.rowcount
        last = rows[-1][0]
        logger.info("rotation: %s.%s up to id %s", table, column, last)


def rotate_all(*, batch: int = BATCH) -> list[Rotated]:
    if not settings.FIELD_ENCRYPTION_ENABLED:
        raise RuntimeError("FIELD_ENCRYPTION_ENABLED is off: nothing would be encrypted.")
    return [rotate_column(*place, batch=batch) for place in encrypted_columns()]
