"""Provider rate limits shared by every worker process, kept in Redis.

Celery's own `rate_limit` counts per worker instance, so it means nothing for an
autoscaled pool. Here each channel has a global limit (Telegram: 30 messages/s per bot)
and a per-recipient one (1/s per chat), enforced together by one Lua script.

Why our own script instead of the `limits` package: a send must take a token from the
global bucket and the recipient's bucket at once, or from neither (otherwise a
delivery refused by its chat's limit would still use up a global slot), and the caller
needs the exact wait to re-queue with. `limits` checks one key at a time and reports
window resets, not waits. GCRA (the generic cell rate algorithm) keeps one timestamp per
key, uses Redis's clock so all workers agree, and answers with the wait.

Imprecision accepted: with a burst of 1, sends are spaced at least 1/rate apart, so any
1-second window holds at most rate + 1 sends at its two closed ends; configure a rate a
little under the provider's if it counts that strictly.
"""

import logging
from dataclasses import dataclass

from django.conf import settings

from channels_app.shared_state import redis_client

logger = logging.getLogger(__name__)

# KEYS: bucket keys. ARGV: one emission interval (microseconds) per key.
# Returns 0 when a token was taken from every bucket, else the wait in microseconds.
_GCRA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local wait = 0
local tats = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[i])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  tats[i] = tat + interval
  if tat - now > wait then wait = tat - now end
end
if wait > 0 then return wait end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, tats[i], 'PX', math.ceil(tonumber(ARGV[i]) / 1000) + 1000)
end
return 0
"""


@dataclass(frozen=True)
class ChannelLimit:
    per_second: float
    per_recipient_per_second: float


def limit_for(channel: str) -> ChannelLimit | None:
    if not settings.DELIVERY_RATE_LIMIT_ENABLED:
        return None
    rates = settings.CHANNEL_RATE_LIMITS.get(channel)
    return ChannelLimit(*rates) if rates else None


def take_token(channel: str, recipient: str) -> float:
    """0.0 when the send may go now (a token is taken), else the seconds to wait."""
    limit = limit_for(channel)
    if limit is None:
        return 0.0
    client = redis_client()
    keys = [f"ratelimit:{channel}", f"ratelimit:{channel}:{recipient}"]
    intervals = [int(1_000_000 / limit.per_second), int(1_000_000 / limit.per_recipient_per_second)]
    wait_us = client.eval(_GCRA, len(keys), *keys, *intervals)
    return int(wait_us) / 1_000_000
