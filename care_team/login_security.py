"""Signing in to the admin and the web UI: the password, a lockout after repeated
failures, and a second factor for providers who have one.

- Lockout (django-axes): AXES_FAILURE_LIMIT (5) failed sign-ins for one username from one
  address lock that pair out for AXES_COOLOFF_TIME (15 minutes); the answer is a 429 that
  says so. A wrong authenticator code counts as a failure too. `manage.py axes_reset`
  lifts every lockout, `axes_reset_username <name>` one user's.
- Second factor (django-otp, TOTP): a provider with a confirmed TOTP device (added by an
  operator in the admin, scanned into an authenticator app) must give its current code
  with the password, on both sign-in forms. REQUIRE_TOTP makes a device compulsory for
  everyone.
"""

from axes.backends import AxesStandaloneBackend
from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import ValidationError
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.throttling import BaseThrottle


class LockoutBackend(AxesStandaloneBackend):
    """axes' gate, for sign-ins over the web. A check of a password with no request (the
    test client's login(), a management command) is no web sign-in, and axes would refuse
    it outright; it is left to the next backend."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


def client_ip(request) -> str:
    """The address a lockout is counted for: the one the API's throttles use (REMOTE_ADDR,
    or X-Forwarded-For behind TRUSTED_PROXY_COUNT proxies)."""
    return BaseThrottle().get_ident(request)


def second_factor_problem(user, code: str) -> str | None:
    """Why the code does not let the user in, or None when it does (or none is needed)."""
    devices = list(TOTPDevice.objects.filter(user=user, confirmed=True))
    if not devices:
        if settings.REQUIRE_TOTP:
            return (
                "Sign-in needs an authenticator app, and none is set up for this account: "
                "ask an operator to add one."
            )
        return None
    if not code:
        return "Enter the 6-digit code your authenticator app shows."
    # verify_token allows a step of clock drift and refuses a code already used.
    if any(device.verify_token(code) for device in devices):
        return None
    # django-otp also refuses every code for a while after a wrong one (1 s, doubling).
    return (
        "The authenticator code is wrong, was already used, or came too soon after a wrong "
        "one; wait for the next code."
    )


class SecondFactorForm(forms.Form):
    """The password form's extra field and check. Mixed into both sign-in forms."""

    otp_token = forms.CharField(
        label="Authenticator code",
        required=False,
        max_length=10,
        strip=True,
        help_text="Only if your account has an authenticator app.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    def confirm_login_allowed(self, user) -> None:
        super().confirm_login_allowed(user)
        problem = second_factor_problem(user, self.cleaned_data.get("otp_token", ""))
        if problem:
            # Counted by axes like a wrong password: a code cannot be guessed either.
            user_login_failed.send(
                sender=__name__,
                credentials={"username": user.get_username()},
                request=self.request,
            )
            raise ValidationError(problem, code="second_factor")


class SignInForm(SecondFactorForm, AuthenticationForm):
    pass


class AdminSignInForm(SecondFactorForm, AdminAuthenticationForm):
    pass
