"""Model fields whose values are encrypted in the database (patients/encryption.py).

What they cost: an encrypted value cannot be searched, filtered or ordered on in SQL;
equality lookups find nothing (each encryption uses a new IV). Only fields nobody
queries by are encrypted; addresses are found through their blind index instead.
"""

from django.core.exceptions import FieldError
from django.db import models

from patients.encryption import (
    blind_index,
    decrypt_json,
    decrypt_text,
    encrypt_json,
    encrypt_text,
)


class RefuseSQLLookups:
    """`filter(address="...")` on an encrypted column would quietly find nothing (and a
    test asserting that nothing is there would pass for that reason): refuse it."""

    def get_lookup(self, lookup_name):
        if lookup_name == "isnull":
            return super().get_lookup(lookup_name)
        raise FieldError(
            f"{self.model.__name__}.{self.name} is encrypted at rest and cannot be searched "
            "in SQL; look an address up by its hash (Contact.objects.at(channel, address))."
        )


class EncryptedTextField(RefuseSQLLookups, models.TextField):
    def from_db_value(self, value, expression, connection):
        return value if value is None else decrypt_text(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return value if value is None else encrypt_text(value)


class EncryptedJSONField(RefuseSQLLookups, models.TextField):
    """A JSON value, encrypted as text (the column is text, not jsonb)."""

    def from_db_value(self, value, expression, connection):
        return value if value is None else decrypt_json(value)

    def to_python(self, value):
        return value

    def get_prep_value(self, value):
        return value if value is None else encrypt_json(value)

    def value_to_string(self, obj):
        # As Django's JSONField: the serializer writes the value itself (dumpdata holds
        # plain JSON; loaddata hands it back to to_python, and saving encrypts it once).
        return self.value_from_object(obj)


class BlindIndexField(models.CharField):
    """The keyed hash of other fields of the row (patients.encryption.blind_index), set on
    every save: the column lookups and unique constraints use instead of an encrypted one."""

    def __init__(self, *args, of: tuple[str, ...] = (), **kwargs) -> None:
        self.of = tuple(of)
        kwargs.setdefault("max_length", 64)
        kwargs["editable"] = False
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        kwargs["of"] = self.of
        kwargs.pop("editable", None)
        return name, path, args, kwargs

    def pre_save(self, model_instance, add):
        value = blind_index(*(str(getattr(model_instance, name)).strip() for name in self.of))
        setattr(model_instance, self.attname, value)
        return value
