"""Which language a patient reads, and their dates and times written for it.

A patient's `language` is free text ("de-AT", "pt_BR"): it is read as the closest
language of settings.LANGUAGES ("de"), else the site's LANGUAGE_CODE (English). What a
patient reads is rendered inside `translation.override(patient_language(...))` at the
point where it is written, never by the process-wide language: a worker serves
patients of every language one after the other.
"""

from datetime import datetime, tzinfo

from django.conf import settings
from django.utils import translation
from django.utils.formats import date_format
from django.utils.translation import pgettext


def patient_language(code: str | None) -> str:
    """The language of settings.LANGUAGES closest to `code`; LANGUAGE_CODE when none is."""
    wanted = (code or "").strip().lower().replace("_", "-")
    if not wanted:
        return settings.LANGUAGE_CODE
    try:
        return translation.get_supported_language_variant(wanted)
    except LookupError:
        return settings.LANGUAGE_CODE


def moment_text(moment: datetime, zone: tzinfo, language: str | None) -> str:
    """A day and time as a reminder list shows it: "Mon 2026-11-30 08:00" in English,
    "Mo., 30.11.2026, 08:00" in German."""
    with translation.override(patient_language(language)):
        # Translators: a date format (Django's date filter): D weekday, Y-m-d, H:i time.
        return date_format(moment.astimezone(zone), pgettext("patient date", "D Y-m-d H:i"))


def time_text(moment: datetime, zone: tzinfo, language: str | None) -> str:
    """A time of day, as a button's answer shows it: "14:30"."""
    with translation.override(patient_language(language)):
        # Translators: a time format (Django's date filter): H hours, i minutes.
        return date_format(moment.astimezone(zone), pgettext("patient time", "H:i"))
