"""The {named} parameters of a template's text: plain names only, checked when the template
is saved and when a message is made from it. Apart from message_templates.py so that the
model can check its body without importing the lookups built on it."""

import string

from django.core.exceptions import ValidationError


def template_parameters(body: str) -> set[str]:
    """The {names} a template uses; only plain names, so no attribute or index lookups."""
    names = set()
    try:
        parsed = list(string.Formatter().parse(body))
    except ValueError as exc:
        raise ValidationError({"body": f"The template's braces do not match: {exc}."}) from exc
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValidationError(
                {"body": f"{{{name}}} is not a parameter; use plain names like {{name}}."}
            )
        names.add(name)
    return names
