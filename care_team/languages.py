"""The language of the care team's pages (web UI, admin, API messages).

LocaleMiddleware reads the browser's Accept-Language first; a provider who chose a
language of their own (ProviderPreference, the menu at the top of the web UI) gets it
instead on every device. Patients' texts never follow this: they are rendered in the
patient's language (patients/languages.py).
"""

from django.conf import settings
from django.utils import translation

from care_team.models import ProviderPreference


class ProviderLanguageMiddleware:
    """After LocaleMiddleware and AuthenticationMiddleware: a signed-in provider's choice
    overrides the browser's language."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        language = provider_language(request.user) if _signed_in(request) else ""
        if language:
            translation.activate(language)
            request.LANGUAGE_CODE = language
        return self.get_response(request)


def _signed_in(request) -> bool:
    user = getattr(request, "user", None)
    return user is not None and user.is_authenticated


def provider_language(user) -> str:
    """The provider's chosen language, or "" for the browser's."""
    chosen = ProviderPreference.objects.filter(user=user).values_list("language", flat=True).first()
    return chosen if chosen in dict(settings.LANGUAGES) else ""


def provider_language_set(user, language: str) -> None:
    """Saves the provider's choice ("" goes back to the browser's language)."""
    if language and language not in dict(settings.LANGUAGES):
        raise ValueError(f"unknown language {language!r}")
    ProviderPreference.objects.update_or_create(user=user, defaults={"language": language})
