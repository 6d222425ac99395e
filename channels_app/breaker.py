"""One circuit breaker per channel, its state in Redis so every worker sees the same one.

closed: sends go through; consecutive transient failures (network, 5xx, timeouts; not
  429, which is the provider pacing us) are counted, and at BREAKER_FAILURE_THRESHOLD
  the breaker opens.
open: nothing is sent for BREAKER_OPEN_SECONDS; deliveries wait (held, not an
  attempt, not a failure) and the dispatcher stops publishing to the channel's queue.
half-open: after that time one probe is let through; success closes the breaker, a
  failure opens it again. A probe whose worker died is replaced after the lease.

The probe is taken by whichever asks first once the open period is over: a delivery
already in flight (breaker_allow), or the dispatcher, which publishes one delivery as the
probe (breaker_feed). The second matters after a long outage: once every delivery that was
in flight has expired, nothing else would ever ask, and the channel would stay shut.
"""

import logging
from dataclasses import dataclass

from django.conf import settings

from channels_app import metrics
from channels_app.shared_state import redis_client, run_script

logger = logging.getLogger(__name__)

_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# ARGV: probe lease (ms), half-open recheck (ms). Returns {decision, wait_ms}; decision is
# closed, probe or wait.
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
return {'wait', math.min(probe_until - now, tonumber(ARGV[2]))}
"""
)

# ARGV: how long a published probe has to reach a worker (ms). Returns {decision, wait_ms}:
# feed (closed), probe (publish one delivery: the open period is over and no probe has
# been published since), or shut.
_FEED = (
    _NOW_MS
    + """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'closed' then return {'feed', 0} end
local ends_field = 'until'
if state == 'half_open' then ends_field = 'probe_until' end
local ends = tonumber(redis.call('HGET', KEYS[1], ends_field) or 0)
if now < ends then return {'shut', ends - now} end
local published = tonumber(redis.call('HGET', KEYS[1], 'probe_published_until') or 0)
if now < published then return {'shut', published - now} end
redis.call('HSET', KEYS[1], 'probe_published_until', now + tonumber(ARGV[1]))
return {'probe', 0}
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


# While a probe is on its way the others look again this often: a probe takes one send
# (seconds), while its lease is the lease of a lost worker (minutes), and waiting out the
# lease would hold the channel's deliveries for minutes after the provider came back.
HALF_OPEN_RECHECK_SECONDS = 5


def breaker_allow(channel: str) -> Decision:
    """Asked by a delivery about to be sent: may it go, and is it the probe?"""
    lease_ms = settings.DELIVERY_LEASE_SECONDS * 1000
    recheck_ms = HALF_OPEN_RECHECK_SECONDS * 1000
    decision, wait_ms = run_script(_ALLOW, [_key(channel)], [lease_ms, recheck_ms])
    decision = decision.decode() if isinstance(decision, bytes) else decision
    if decision == "probe":
        logger.warning("breaker %s: half-open, one probe let through", channel)
    return Decision(decision != "wait", int(wait_ms) / 1000, probe=decision == "probe")


def breaker_record(channel: str, *, success: bool) -> None:
    change = run_script(
        _RECORD,
        [_key(channel)],
        [
            1 if success else 0,
            settings.BREAKER_FAILURE_THRESHOLD,
            int(settings.BREAKER_OPEN_SECONDS * 1000),
        ],
    )
    change = change.decode() if isinstance(change, bytes) else change
    if change:
        metrics.breaker_transitions.labels(channel, change).inc()
        logger.warning("breaker %s: %s", channel, change)


def breaker_feed(channel: str) -> str:
    """Asked before publishing to the channel: "feed" (closed), "shut", or "probe": the
    open period is over, so one delivery may be published to probe the provider. Once
    per open period at most, across every dispatcher: if that delivery never reaches
    the breaker (cancelled meanwhile, or its task lost), another is published then."""
    publish_ms = int(settings.BREAKER_OPEN_SECONDS * 1000)
    decision, _ = run_script(_FEED, [_key(channel)], [publish_ms])
    decision = decision.decode() if isinstance(decision, bytes) else decision
    if decision == "probe":
        logger.warning("breaker %s: open period over, one delivery published to probe", channel)
    return decision


def breaker_display_state(fields: dict[str, str], now_ms: int) -> str:
    """closed, open, or probing: an open breaker whose open period is over, or a half-open
    one, waits only for its probe."""
    state = fields.get("state", "closed")
    if state == "half_open" or (state == "open" and int(fields.get("until", 0)) <= now_ms):
        return "probing"
    return state


def breaker_states(channels) -> dict[str, dict[str, str]]:
    """For the status page: each channel's breaker fields as stored."""
    client = redis_client()
    states = {}
    for channel in channels:
        raw = client.hgetall(_key(channel))
        states[channel] = {k.decode(): v.decode() for k, v in raw.items()} or {"state": "closed"}
    return states
