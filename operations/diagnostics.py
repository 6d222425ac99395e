"""Checks an operator runs by hand from the control panel: the database's and Redis's
round trips, the Telegram bot (getMe, getWebhookInfo), and each provider's
configuration.

Each check says how it checked: "live" made a cheap authenticated call to the provider
(Telegram's getMe, WhatsApp's phone-number read, Twilio's Account resource, an SMTP
login), "configuration" only looked at the settings (a provider with nothing cheap to
call, or an e-mail backend that sends nowhere). A result never carries a token, a
password or a URL with a token in it: a failure names the HTTP status and the
provider's own error text, or the exception's class.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import requests
from django.conf import settings
from django.core.mail import get_connection
from django.db import DatabaseError, connection
from redis.exceptions import RedisError

from channels_app.http import http_session, without_numbers
from channels_app.shared_state import redis_client

logger = logging.getLogger(__name__)

# A diagnostic waits at most this long for a provider, whatever the adapter's timeout.
TIMEOUT_SECONDS = 5.0
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


@dataclass(frozen=True)
class Diagnostic:
    name: str
    ok: bool
    how: str  # "live" or "configuration"
    detail: str
    milliseconds: float | None = None


def database_round_trip() -> Diagnostic:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return Diagnostic("database", False, "live", f"no answer ({type(exc).__name__})")
    elapsed = _ms(started)
    return Diagnostic("database", True, "live", f"SELECT 1 in {elapsed} ms", elapsed)


def redis_round_trip() -> Diagnostic:
    started = time.perf_counter()
    try:
        redis_client().ping()
    except (RedisError, OSError) as exc:
        return Diagnostic("redis", False, "live", f"no answer ({type(exc).__name__})")
    elapsed = _ms(started)
    return Diagnostic("redis", True, "live", f"PING in {elapsed} ms", elapsed)


def telegram_get_me() -> Diagnostic:
    if not settings.TELEGRAM_BOT_TOKEN:
        return Diagnostic("telegram_get_me", False, "configuration", "TELEGRAM_BOT_TOKEN is empty")
    answer = _telegram("getMe")
    if isinstance(answer, str):
        return Diagnostic("telegram_get_me", False, "live", answer)
    bot, elapsed = answer
    detail = f"@{bot.get('username', '?')} (id {bot.get('id', '?')}) in {elapsed} ms"
    return Diagnostic("telegram_get_me", True, "live", detail, elapsed)


def telegram_webhook_info() -> Diagnostic:
    if not settings.TELEGRAM_BOT_TOKEN:
        return Diagnostic("telegram_webhook", False, "configuration", "TELEGRAM_BOT_TOKEN is empty")
    answer = _telegram("getWebhookInfo")
    if isinstance(answer, str):
        return Diagnostic("telegram_webhook", False, "live", answer)
    info, elapsed = answer
    url = urlsplit(info.get("url") or "")
    where = f"{url.scheme}://{url.netloc}{url.path}" if url.netloc else "none (polling)"
    detail = f"webhook {where}; {info.get('pending_update_count', 0)} updates pending"
    if error := info.get("last_error_message"):
        detail += f"; last error: {without_numbers(str(error))}"
    return Diagnostic(
        "telegram_webhook", not info.get("last_error_message"), "live", detail, elapsed
    )


def whatsapp_check() -> Diagnostic:
    missing = _missing("WHATSAPP_TOKEN", "WHATSAPP_PHONE_NUMBER_ID")
    if missing:
        return Diagnostic("whatsapp", False, "configuration", f"not set: {missing}")
    url = f"{settings.WHATSAPP_API_BASE_URL.rstrip('/')}/{quote(settings.WHATSAPP_PHONE_NUMBER_ID)}"
    headers = {"Authorization": f"Bearer {settings.WHATSAPP_TOKEN}"}
    answer = _call_json(
        "GET", url, headers=headers, params={"fields": "verified_name,quality_rating"}
    )
    if isinstance(answer, str):
        return Diagnostic("whatsapp", False, "live", answer)
    number, elapsed = answer
    detail = (
        f"phone number id answered: {number.get('verified_name', '?')}, quality "
        f"{number.get('quality_rating', '?')}, in {elapsed} ms"
    )
    return Diagnostic("whatsapp", True, "live", detail, elapsed)


def twilio_check() -> Diagnostic:
    missing = _missing("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")
    if not settings.TWILIO_FROM_NUMBER and not settings.TWILIO_MESSAGING_SERVICE_SID:
        missing = ", ".join(filter(None, [missing, "TWILIO_FROM_NUMBER or MESSAGING_SERVICE_SID"]))
    if missing:
        return Diagnostic("twilio", False, "configuration", f"not set: {missing}")
    sid = settings.TWILIO_ACCOUNT_SID
    url = (
        f"{settings.TWILIO_API_BASE_URL.rstrip('/')}/2010-04-01/Accounts/{quote(sid, safe='')}.json"
    )
    answer = _call_json("GET", url, auth=(sid, settings.TWILIO_AUTH_TOKEN))
    if isinstance(answer, str):
        return Diagnostic("twilio", False, "live", answer)
    account, elapsed = answer
    status = account.get("status", "?")
    return Diagnostic(
        "twilio", status == "active", "live", f"account {status}, in {elapsed} ms", elapsed
    )


def email_check() -> Diagnostic:
    if not settings.DEFAULT_FROM_EMAIL:
        return Diagnostic("email", False, "configuration", "not set: DEFAULT_FROM_EMAIL")
    if settings.EMAIL_BACKEND != SMTP_BACKEND:
        backend = settings.EMAIL_BACKEND.rsplit(".", 2)[-2]
        return Diagnostic(
            "email", True, "configuration", f"the {backend} backend sends nowhere: nothing to call"
        )
    started = time.perf_counter()
    mail = get_connection(timeout=min(settings.EMAIL_TIMEOUT, TIMEOUT_SECONDS))
    try:
        mail.open()  # connects, starts TLS and logs in as configured
    except (OSError, ValueError) as exc:
        return Diagnostic("email", False, "live", f"SMTP server refused ({type(exc).__name__})")
    finally:
        mail.close()
    elapsed = _ms(started)
    login = "logged in" if settings.EMAIL_HOST_USER else "connected (no login configured)"
    return Diagnostic("email", True, "live", f"SMTP {login} in {elapsed} ms", elapsed)


DIAGNOSTICS: dict[str, Callable[[], Diagnostic]] = {
    "database": database_round_trip,
    "redis": redis_round_trip,
    "telegram_get_me": telegram_get_me,
    "telegram_webhook": telegram_webhook_info,
    "whatsapp": whatsapp_check,
    "twilio": twilio_check,
    "email": email_check,
}


def run_diagnostic(name: str) -> Diagnostic:
    """One diagnostic by name (KeyError for an unknown one); one that raises something
    unforeseen reports its class instead of failing the page."""
    check = DIAGNOSTICS[name]
    try:
        return check()
    except Exception as exc:  # noqa: BLE001 - a diagnostic must answer, never raise
        logger.warning("diagnostic %s raised %s", name, type(exc).__name__)
        return Diagnostic(name, False, "live", f"error ({type(exc).__name__})")


def _telegram(method: str) -> tuple[dict, float] | str:
    base = settings.TELEGRAM_API_BASE_URL.rstrip("/")
    # POST, as the Bot API's clients call it (it takes GET too).
    answer = _call_json("POST", f"{base}/bot{settings.TELEGRAM_BOT_TOKEN}/{method}")
    if isinstance(answer, str):
        return answer
    body, elapsed = answer
    if not body.get("ok"):
        return f"{method} refused: {without_numbers(str(body.get('description', '')))}"
    return body.get("result") or {}, elapsed


def _call_json(verb: str, url: str, **kwargs) -> tuple[dict, float] | str:
    """The JSON object a call answers with and the milliseconds it took, or what went wrong
    (the status and the provider's message, never the URL: a Telegram URL holds the
    token)."""
    started = time.perf_counter()
    try:
        response = http_session().request(verb, url, timeout=TIMEOUT_SECONDS, **kwargs)
    except requests.RequestException as exc:
        return f"no answer ({type(exc).__name__})"
    elapsed = _ms(started)
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return f"HTTP {response.status_code}, not a JSON object"
    if response.status_code >= 400:
        return f"HTTP {response.status_code}: {_provider_message(body)}"
    return body, elapsed


def _provider_message(body: dict) -> str:
    """Telegram's description, the Graph API's error.message, Twilio's message."""
    error = body.get("error")
    text = body.get("description") or (error.get("message") if isinstance(error, dict) else "")
    return without_numbers(str(text or body.get("message") or "no message"))


def _missing(*names: str) -> str:
    return ", ".join(name for name in names if not getattr(settings, name))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
