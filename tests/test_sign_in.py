"""Signing in to the admin and the web UI: lockout after repeated failures, the
authenticator code for providers who have one, and sessions that end with the browser
(docs/security.md, 10)."""

import base64
import hashlib
import hmac
import struct
import time
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import User
from django.core.management import call_command
from django_otp.plugins.otp_totp.models import TOTPDevice

PASSWORD = "a long and uncommon passphrase"
ADMIN_LOGIN = "/admin/login/"
WEB_LOGIN = "/scheduled-messages/login/"
LOGINS = [ADMIN_LOGIN, WEB_LOGIN]


@pytest.fixture
def nurse(db):
    return User.objects.create_user("nurse", password=PASSWORD, is_staff=True)


def sign_in(client, url, password=PASSWORD, *, code="", address="127.0.0.1", username="nurse"):
    return client.post(
        url,
        {"username": username, "password": password, "otp_token": code},
        REMOTE_ADDR=address,
    )


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def totp(device: TOTPDevice, at: float | None = None) -> str:
    """RFC 6238 from the device's key, computed here rather than by django-otp."""
    counter = int(((at or time.time()) - device.t0) // device.step)
    digest = hmac.new(device.bin_key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10**device.digits).zfill(device.digits)


# -- Lockout ------------------------------------------------------------------------------


@pytest.mark.parametrize("url", LOGINS)
def test_five_wrong_passwords_lock_out_the_right_one(client, nurse, url):
    for _ in range(4):
        assert sign_in(client, url, "wrong password").status_code == 200  # the form again
    assert sign_in(client, url, "wrong password").status_code == 429  # the fifth locks

    refused = sign_in(client, url)

    assert refused.status_code == 429
    assert "Too many failed sign-ins" in refused.content.decode()
    assert not signed_in(client)


@pytest.mark.parametrize("url", LOGINS)
def test_after_the_cool_off_the_right_password_works_again(client, nurse, url):
    for _ in range(5):
        sign_in(client, url, "wrong password")
    assert sign_in(client, url).status_code == 429

    AccessAttempt.objects.update(
        attempt_time=AccessAttempt.objects.get().attempt_time - timedelta(minutes=16)
    )

    assert sign_in(client, url).status_code == 302
    assert signed_in(client)


def test_an_operator_can_lift_a_lockout_at_once(client, nurse):
    for _ in range(5):
        sign_in(client, WEB_LOGIN, "wrong password")
    call_command("axes_reset_username", "nurse")
    assert sign_in(client, WEB_LOGIN).status_code == 302


def test_the_lockout_holds_one_username_at_one_address(client, nurse):
    for _ in range(5):
        sign_in(client, WEB_LOGIN, "wrong password", address="203.0.113.5")
    assert sign_in(client, WEB_LOGIN, address="203.0.113.5").status_code == 429
    assert sign_in(client, WEB_LOGIN, address="203.0.113.6").status_code == 302


def test_four_failures_then_success_start_the_count_again(client, nurse):
    for _ in range(4):
        sign_in(client, WEB_LOGIN, "wrong password")
    assert sign_in(client, WEB_LOGIN).status_code == 302
    client.logout()
    for _ in range(4):
        sign_in(client, WEB_LOGIN, "wrong password")
    assert sign_in(client, WEB_LOGIN).status_code == 302


# -- The authenticator code ------------------------------------------------------------------


@pytest.fixture
def device(nurse):
    return TOTPDevice.objects.create(user=nurse, name="phone", confirmed=True)


@pytest.mark.parametrize("url", LOGINS)
def test_a_provider_with_an_authenticator_needs_its_code(client, device, url):
    without = sign_in(client, url)
    assert without.status_code == 200 and not signed_in(client)
    assert "Enter the 6-digit code" in without.content.decode()

    wrong = sign_in(client, url, code=totp(device, time.time() - 600))
    assert wrong.status_code == 200 and not signed_in(client)
    time.sleep(1.1)  # django-otp refuses any code for a second after a wrong one

    assert sign_in(client, url, code=totp(device)).status_code == 302
    assert signed_in(client)


def test_a_code_is_accepted_once(client, device):
    code = totp(device)
    assert sign_in(client, WEB_LOGIN, code=code).status_code == 302
    client.logout()
    assert sign_in(client, WEB_LOGIN, code=code).status_code == 200


def test_wrong_codes_count_towards_the_lockout(client, device):
    for _ in range(5):
        sign_in(client, WEB_LOGIN, code="000000")
    assert sign_in(client, WEB_LOGIN, code=totp(device)).status_code == 429


def test_a_provider_without_an_authenticator_signs_in_with_the_password(client, nurse):
    assert sign_in(client, WEB_LOGIN).status_code == 302


def test_with_require_totp_a_provider_without_an_authenticator_is_refused(client, nurse, settings):
    settings.REQUIRE_TOTP = True
    refused = sign_in(client, WEB_LOGIN)
    assert refused.status_code == 200 and not signed_in(client)
    assert "ask an operator to add one" in refused.content.decode()


def test_both_sign_in_pages_show_the_code_field(client, db):
    for url in LOGINS:
        assert 'name="otp_token"' in client.get(url).content.decode()


def test_the_totp_device_has_a_key_to_scan(device):
    assert device.config_url.startswith("otpauth://totp/")
    assert base64.b32encode(device.bin_key).decode().rstrip("=") in device.config_url


# -- Sessions ---------------------------------------------------------------------------------


def test_the_session_cookie_ends_with_the_browser_by_default(client, nurse, settings):
    assert settings.SESSION_EXPIRE_AT_BROWSER_CLOSE is True
    assert settings.SESSION_COOKIE_AGE == 8 * 3600

    response = sign_in(client, WEB_LOGIN)

    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie.value and cookie["max-age"] == "" and cookie["expires"] == ""


def test_a_persistent_session_lasts_the_cookie_age(client, nurse, settings):
    settings.SESSION_EXPIRE_AT_BROWSER_CLOSE = False
    response = sign_in(client, WEB_LOGIN)
    assert response.cookies[settings.SESSION_COOKIE_NAME]["max-age"] == 8 * 3600
