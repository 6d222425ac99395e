"""Request rates for the API (settings.REST_FRAMEWORK: per user, per client address for
the open endpoints, and a scope of its own for the health probe).

DRF's throttles keep their counts in Django's cache, which is Redis. When Redis does not
answer, a request is let through rather than failed: the rate limit protects the site,
and turning a Redis outage into an API outage would not.
"""

import logging

from redis.exceptions import RedisError
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

logger = logging.getLogger(__name__)


class FailOpen:
    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except (RedisError, OSError) as exc:
            logger.warning("API throttle not applied: the cache failed (%s)", type(exc).__name__)
            return True


class UserThrottle(FailOpen, UserRateThrottle):
    pass


class AnonThrottle(FailOpen, AnonRateThrottle):
    pass


class HealthThrottle(FailOpen, AnonRateThrottle):
    scope = "health"
