"""API tokens: stored only as a hash (django-rest-knox), each with an expiry.

A token is shown once, when it is issued; the database keeps its SHA-512 digest, so a
copy of the database (or of a backup) holds no usable credential. A provider may hold
several at once (one per integration), so a new one can be rolled out before the old
one is revoked.
"""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from knox.models import AuthToken


def api_token_issue(user: User, *, revoke_others: bool = False) -> str:
    """A new token for `user`, valid for API_TOKEN_DAYS; with `revoke_others`, the user's
    other tokens stop working at once (a rotation)."""
    if revoke_others:
        api_tokens_revoke(user)
    _, token = AuthToken.objects.create(user, expiry=timedelta(days=settings.API_TOKEN_DAYS))
    return token


def api_tokens_revoke(user: User) -> int:
    """Every token of `user` stops working; returns how many there were."""
    deleted, _ = AuthToken.objects.filter(user=user).delete()
    return deleted
