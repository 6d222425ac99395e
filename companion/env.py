"""Typed readers for environment variables.

Settings are read here and nowhere else. A wrong value stops start-up with an
ImproperlyConfigured that names the variable, instead of surfacing later as an odd
runtime error. Every name read is remembered in READ so that a test can check that
docker-compose.yml and deploy/ only set variables the code knows.
"""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

READ: set[str] = set()

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str) -> str | None:
    """The value of NAME, or of the file named by NAME_FILE (container secrets)."""
    READ.add(name)
    READ.add(f"{name}_FILE")
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={file_name!r} cannot be read: {exc}") from exc
    return os.environ.get(name)


def string(name: str, default: str = "") -> str:
    value = _raw(name)
    return default if value is None else value


def boolean(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean; use true or false")


def _numeric(name, default, cast, what: str, minimum, maximum):
    value = _raw(name)
    if value is None or value.strip() == "":
        return default
    try:
        result = cast(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not {what}") from None
    if minimum is not None and result < minimum:
        raise ImproperlyConfigured(f"{name}={result} is below its minimum of {minimum}")
    if maximum is not None and result > maximum:
        raise ImproperlyConfigured(f"{name}={result} is above its maximum of {maximum}")
    return result


def integer(
    name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    return _numeric(name, default, int, "a whole number", minimum, maximum)


def number(name: str, default: float, *, minimum: float = 0.0) -> float:
    return _numeric(name, default, float, "a number", minimum, None)


def numbers(name: str, default: list[float], *, minimum: float = 0.0) -> list[float]:
    """A comma-separated list of numbers, e.g. "300,600,1200"."""
    found = []
    for item in words(name, []):
        try:
            value = float(item)
        except ValueError:
            raise ImproperlyConfigured(f"{name}={_raw(name)!r}: {item!r} is not a number") from None
        if value < minimum:
            raise ImproperlyConfigured(
                f"{name}={_raw(name)!r}: {value:g} is below its minimum of {minimum:g}"
            )
        found.append(value)
    return found or default


def words(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def url(name: str, default: str, *, schemes: tuple[str, ...]) -> str:
    value = string(name, default).strip()
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme not in schemes:
        raise ImproperlyConfigured(
            f"{name}={value!r} must be a URL starting with one of: "
            + ", ".join(f"{s}://" for s in schemes)
        )
    return value.rstrip("/")


# Values that documentation, examples and generators put in place of a real key.
_PLACEHOLDERS = ("change-me", "changeme", "change_me", "insecure", "placeholder", "your-secret")


def secret_key_weakness(value: str) -> str:
    """Why a secret key is unfit for production ("" when it is fit). Never shows the key."""
    if any(word in value.lower() for word in _PLACEHOLDERS):
        return "is a placeholder"
    if len(value) < 50:
        return f"has {len(value)} characters"
    if len(set(value)) < 5:
        return "has fewer than 5 different characters"
    return ""


def proxy_ssl_header(name: str) -> tuple[str, str] | None:
    """A header name such as X-Forwarded-Proto as Django's SECURE_PROXY_SSL_HEADER, the
    value meaning HTTPS being "https"; None when unset."""
    value = string(name).strip()
    if not value:
        return None
    if not all(char.isascii() and (char.isalnum() or char == "-") for char in value):
        raise ImproperlyConfigured(
            f"{name}={value!r} must be a header name such as X-Forwarded-Proto "
            "(the proxy sets it to https)"
        )
    return ("HTTP_" + value.upper().replace("-", "_"), "https")


RATE_PERIODS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "day": 86400}


def rate(name: str, default: str) -> str:
    """A request rate as Django REST framework writes it, e.g. "600/min"; checked here, so
    a typo stops start-up instead of failing the first request."""
    value = string(name, default).strip()
    count, _, period = value.partition("/")
    if not (count.isdigit() and int(count) > 0 and period in RATE_PERIODS):
        raise ImproperlyConfigured(
            f"{name}={value!r} is not a rate like 60/min (a count, then /s, /min, /h or /day)"
        )
    return value
