"""One circuit breaker per channel, its state in Redis so every worker sees the same one.

closed: sends go through; consecutive transient failures (network, 5xx, timeouts; not
  429, which is the provider pacing us) are counted, and at BREAKER_FAILURE_THRESHOLD
  the breaker opens.
open: nothing is sent for BREAKER_OPEN_SECONDS; deliveries wait (re-queued, not an
  attempt, not a failure) and the dispatcher stops publishing to the channel's queue.
half-open: after that time one probe is let through; success closes the breaker, a
  failure opens it again. A probe whose worker died is replaced after the lease.
"""

import logging
from dataclasses import dataclass

from django.conf import settings

from channels_app.shared_state import redis_client

logger = logging.getLogger(__name__)

_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# ARGV: probe lease (ms). Returns {decision, wait_ms}; decision is closed, probe or wait.
_ALLOW = (
    _NOW_MS
    + """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'closed' then return {'closed', 0} end
if state == 'open' then
  local reopen = tonumber(redis.call('HGET', KEYS[1], 'until') or 0)
  if now < reopen then return {'wait', reopen - now} end
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe_until', now + tonumber(ARGV[1]))
  return {'probe', 0}
end
local probe_until = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or 0)
if now >= probe_until then
  redis.call('HSET', KEYS[1], 'probe_until', now + tonumber(ARGV[1]))
  return {'probe', 0}
end
return {'wait', probe_until - now}
"""
)

# ARGV: 1 for success or 0 for failure, threshold, open time (ms).
# Returns the transition made: '', 'opened', 'reopened' or 'closed'.
_RECORD = (
    _NOW_MS
    + """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if ARGV[1] == '1' then
  redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0)
  if state ~= 'closed' then return 'closed' end
  return ''
end
if state == 'half_open' then
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', now + tonumber(ARGV[3]))
  return 'reopened'
end
if state == 'open' then return '' end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if failures >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', now + tonumber(ARGV[3]), 'failures', 0,
             'opened_at', now)
  return 'opened'
end
return ''
"""
)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    wait: float  # seconds, when not allowed
    probe: bool = False


def _key(channel: str) -> str:
    return f"breaker:{channel}"


def breaker_allow(channel: str) -> Decision:
    lease_ms = settings.DELIVERY_LEASE_SECONDS * 1000
    decision, wait_ms = redis_client().eval(_ALLOW, 1, _key(channel), lease_ms)
    decision = decision.decode() if isinstance(decision, bytes) else decision
    if decision == "probe":
        logger.warning("breaker %s: half-open, one probe let through", channel)
    return Decision(decision != "wait", int(wait_ms) / 1000, probe=decision == "probe")


def breaker_record(channel: str, *, success: bool) -> None:
    change = redis_client().eval(
        _RECORD,
        1,
        _key(channel),
        1 if success else 0,
        settings.BREAKER_FAILURE_THRESHOLD,
        int(settings.BREAKER_OPEN_SECONDS * 1000),
    )
    change = change.decode() if isinstance(change, bytes) else change
    if change:
        logger.warning("breaker %s: %s", channel, change)


def breaker_is_open(channel: str) -> bool:
    """True while the channel should not be fed (open, or half-open awaiting its probe)."""
    state = redis_client().hget(_key(channel), "state")
    return state is not None and state.decode() != "closed"


def breaker_states(channels) -> dict[str, dict[str, str]]:
    """For the status page: each channel's breaker fields as stored."""
    client = redis_client()
    states = {}
    for channel in channels:
        raw = client.hgetall(_key(channel))
        states[channel] = {k.decode(): v.decode() for k, v in raw.items()} or {"state": "closed"}
    return states
