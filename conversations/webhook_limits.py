"""A bound on how often one address may call a webhook (settings.WEBHOOK_RATE_PER_ADDRESS).

The webhooks need no login, and each call checks a signature and may write a row, so a
flood from one address is cut off before any of that: 429 with Retry-After, which
Telegram and Meta answer by sending again later. Counted per endpoint and address in
fixed windows in Django's cache (Redis), so across every web process; the address is the
one DRF's throttles use (REMOTE_ADDR, or X-Forwarded-For behind TRUSTED_PROXY_COUNT
proxies). When Redis does not answer, calls are let through: the webhooks store what
they get, and losing patients' messages would be worse than a flood.
"""

import functools
import logging
import math
import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from redis.exceptions import RedisError
from rest_framework.throttling import BaseThrottle

logger = logging.getLogger(__name__)
_PERIOD_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}  # as DRF reads a rate


def limited_per_address(endpoint: str):
    """Decorates a webhook view: past the rate, 429 with Retry-After, before the view."""

    def decorate(view):
        @functools.wraps(view)
        def limited(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            wait = _seconds_to_wait(endpoint, BaseThrottle().get_ident(request))
            if wait:
                logger.warning("%s webhook: rate per address exceeded", endpoint)
                answer = HttpResponse("Too many requests.", status=429, content_type="text/plain")
                answer["Retry-After"] = str(wait)
                return answer
            return view(request, *args, **kwargs)

        return limited

    return decorate


def _seconds_to_wait(endpoint: str, address: str) -> int:
    """0 when the call may go ahead (and is counted), else the seconds until it may."""
    count, period = settings.WEBHOOK_RATE_PER_ADDRESS.split("/")
    limit, window = int(count), _PERIOD_SECONDS[period[0]]
    now = time.time()
    key = f"webhook:{endpoint}:{address}:{int(now // window)}"
    try:
        cache.add(key, 0, timeout=window + 1)
        calls = cache.incr(key)
    except (RedisError, OSError, ValueError) as exc:  # ValueError: expired in between
        logger.warning("%s webhook: rate not counted (%s)", endpoint, type(exc).__name__)
        return 0
    if calls <= limit:
        return 0
    return max(1, math.ceil(window - now % window))
