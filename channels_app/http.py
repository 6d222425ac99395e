"""What the HTTP adapters (WhatsApp, Twilio) share: a reused session, Retry-After, and
provider texts with phone numbers taken out."""

import math
import os
import re
import threading
from collections.abc import Mapping

import requests

# A phone number in a provider's text: 7 to 15 digits, maybe with a + and separators.
_PHONE_NUMBER = re.compile(r"\+?\d(?:[ ()-]?\d){6,14}")


class _Sessions(threading.local):
    pid: int = 0
    session: requests.Session | None = None


_sessions = _Sessions()


def http_session() -> requests.Session:
    """One Session per thread and process, so connections are reused; after a fork
    (Celery's prefork pool) the parent's sockets must not be."""
    if _sessions.session is None or _sessions.pid != os.getpid():
        _sessions.pid = os.getpid()
        _sessions.session = requests.Session()
    return _sessions.session


def retry_after(headers: Mapping[str, str], default: float) -> float:
    """Retry-After when given in seconds, at most an hour."""
    try:
        seconds = float(headers.get("Retry-After", ""))
    except ValueError:
        return default
    return min(max(seconds, 0.0), 3600.0) if math.isfinite(seconds) else default


def without_numbers(text: str) -> str:
    """A provider's text fit for the admin and logs: phone numbers out, 300 characters."""
    return _PHONE_NUMBER.sub("<number>", text)[:300]
