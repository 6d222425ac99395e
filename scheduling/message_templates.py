"""Reminders written once as templates, rendered in the patient's language.

Which template is used, for a key and a patient's language such as "pt-BR": the
organization's template in "pt-br", then "pt", then TEMPLATE_FALLBACK_LANGUAGE ("en");
then a global row (one without an organization) in the same three languages; then the
built-in set here (medication_reminder, appointment_reminder, check_in, follow_up in en
and de) in the same three. The clinic's own text comes first, in whichever language.
Parameters are checked when a message is created: a missing or unknown one is an error
then, never a broken message at send time. In HTML templates parameters are escaped.
"""

import html

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Q

from scheduling.models import MessageTemplate
from scheduling.template_syntax import template_parameters

# The global defaults. Minimum necessary: no diagnosis or medication named, since a
# message may be read on a lock screen; clinics add detail in their own templates.
DEFAULT_TEMPLATES = {
    ("medication_reminder", "en"): "Hello {name}, it is time for your {time} reminder from "
    "your care team.",
    ("medication_reminder", "de"): "Hallo {name}, es ist Zeit für Ihre Erinnerung um {time} "
    "von Ihrem Behandlungsteam.",
    ("appointment_reminder", "en"): "Hello {name}, a reminder of your appointment on {date} "
    "at {time}.",
    ("appointment_reminder", "de"): "Hallo {name}, wir erinnern Sie an Ihren Termin am {date} "
    "um {time}.",
    ("check_in", "en"): "Hello {name}, how are you today? Your care team would like to hear "
    "from you.",
    ("check_in", "de"): "Hallo {name}, wie geht es Ihnen heute? Ihr Behandlungsteam freut sich "
    "auf Ihre Rückmeldung.",
    ("follow_up", "en"): "Hello {name}, your care team would like to follow up with you. "
    "Please get in touch when you can.",
    ("follow_up", "de"): "Hallo {name}, Ihr Behandlungsteam möchte sich bei Ihnen melden. "
    "Bitte kontaktieren Sie uns, wenn es Ihnen passt.",
}


def _languages(language: str) -> list[str]:
    wanted = (language or "").lower()
    fallback = settings.TEMPLATE_FALLBACK_LANGUAGE
    candidates = [wanted, wanted.split("-")[0], fallback, fallback.split("-")[0]]
    return list(dict.fromkeys(c for c in candidates if c))


def find_template(organization_id: int | None, key: str, language: str) -> MessageTemplate:
    """The organization's template, else a global row, else the built-in default."""
    languages = _languages(language)
    rows = {
        (row.organization_id, row.language): row
        for row in MessageTemplate.objects.filter(key=key, language__in=languages).filter(
            Q(organization_id=organization_id) | Q(organization__isnull=True)
        )
    }
    for owner in (organization_id, None):
        for candidate in languages:
            if (owner, candidate) in rows:
                return rows[(owner, candidate)]
    for candidate in languages:
        if (key, candidate) in DEFAULT_TEMPLATES:
            return MessageTemplate(key=key, language=candidate,
                                   body=DEFAULT_TEMPLATES[(key, candidate)])  # fmt: skip
    raise ValidationError({"template": f"There is no template {key!r}."})


def render_template(template: MessageTemplate, params: dict[str, object]) -> str:
    needed = template_parameters(template.body)
    missing = sorted(needed - set(params))
    unknown = sorted(set(params) - needed)
    if missing:
        raise ValidationError({"params": f"Template {template.key!r} needs: {', '.join(missing)}."})
    if unknown:
        raise ValidationError(
            {"params": f"Template {template.key!r} has no parameter: {', '.join(unknown)}."}
        )
    escape = html.escape if template.format == "html" else str
    return template.body.format(**{k: escape(str(v)) for k, v in params.items()})
