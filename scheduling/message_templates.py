"""Reminders written once as templates, rendered in the patient's language.

Which template is used, for a key and a patient's language such as "pt-BR": the
organization's template in "pt-br", then "pt", then TEMPLATE_FALLBACK_LANGUAGE ("en");
then a global row (one without an organization) in the same three languages; then the
built-in set here (medication_reminder, appointment_reminder, check_in, follow_up in
every language of settings.LANGUAGES, from the catalogs in locale/) in the same three.
The clinic's own text comes first, in whichever language.
Parameters are checked when a message is created: a missing or unknown one is an error
then, never a broken message at send time. In HTML templates parameters are escaped.
"""

import html
from functools import cache

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import translation
from django.utils.translation import gettext_lazy as _

from scheduling.models import MessageTemplate
from scheduling.template_syntax import template_parameters

# The global defaults, in every language of settings.LANGUAGES (locale/). Minimum
# necessary: no diagnosis or medication named, since a message may be read on a lock
# screen; clinics add detail in their own templates.
BUILT_IN_TEMPLATES = {
    "medication_reminder": _(
        "Hello {name}, it is time for your {time} reminder from your care team."
    ),
    "appointment_reminder": _("Hello {name}, a reminder of your appointment on {date} at {time}."),
    "check_in": _("Hello {name}, how are you today? Your care team would like to hear from you."),
    "follow_up": _(
        "Hello {name}, your care team would like to follow up with you. "
        "Please get in touch when you can."
    ),
}


@cache
def default_templates() -> dict[tuple[str, str], str]:
    """(key, language) -> body, for each built-in template and language."""
    found = {}
    for language in dict(settings.LANGUAGES):
        with translation.override(language):
            found.update({(key, language): str(body) for key, body in BUILT_IN_TEMPLATES.items()})
    return found


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
    defaults = default_templates()
    for candidate in languages:
        if (key, candidate) in defaults:
            return MessageTemplate(key=key, language=candidate, body=defaults[(key, candidate)])
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
