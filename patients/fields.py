"""Model fields whose values are encrypted in the database (patients/encryption.py).

What they cost: an encrypted value cannot be searched, filtered or ordered on in SQL;
equality lookups find nothing (each encryption uses a new IV). Only fields nobody
queries by are encrypted; addresses are found through their blind index instead.
"""

from django.db import models

from patients.encryption import decrypt_json, decrypt_text, encrypt_json, encrypt_text


class EncryptedTextField(models.TextField):
    def from_db_value(self, value, expression, connection):
        return value if value is None else decrypt_text(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return value if value is None else encrypt_text(value)


class EncryptedJSONField(models.TextField):
    """A JSON value, encrypted as text (the column is text, not jsonb)."""

    def from_db_value(self, value, expression, connection):
        return value if value is None else decrypt_json(value)

    def to_python(self, value):
        return value

    def get_prep_value(self, value):
        return value if value is None else encrypt_json(value)

    def value_to_string(self, obj):
        return encrypt_json(self.value_from_object(obj))
