"""Job types the custom-job tests register, in the test process by import and in the
worker through JOB_TYPE_MODULES, as an operator's own module would be."""

import redis
from django.conf import settings

from operations.job_types import job_type

TRIES_KEY = "tests:job-tries:"


@job_type(
    "test_count",
    schema={
        "type": "object",
        "properties": {
            "up_to": {"type": "integer", "minimum": 1, "maximum": 1000},
            "fail_times": {"type": "integer", "minimum": 0},
            "key": {"type": "string"},
        },
        "required": ["up_to"],
        "additionalProperties": False,
    },
)
def count(payload: dict) -> dict[str, int]:
    """Counts to `up_to`; fails its first `fail_times` tries (counted in Redis under `key`)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    tries = client.incr(TRIES_KEY + payload.get("key", "default"))
    if tries <= payload.get("fail_times", 0):
        raise RuntimeError(f"try {tries} failed on purpose")
    return {"counted": payload["up_to"], "tries": tries}
