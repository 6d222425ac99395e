from django.conf import settings
from django.db import models


class ProviderPreference(models.Model):
    """What a provider chose for themselves; for now the language of their pages."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="provider_preference"
    )
    # A code of settings.LANGUAGES (checked when it is saved, so adding a language needs
    # no migration); empty: the browser's language.
    language = models.CharField(max_length=8, blank=True)

    def __str__(self) -> str:
        return f"{self.user}: {self.language or 'browser language'}"
