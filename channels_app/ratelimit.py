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
import time
from dataclasses import dataclass

from django.conf import settings
from redis.exceptions import RedisError

from channels_app import metrics
from channels_app.base import TransientError
from channels_app.shared_state import run_script
from patients.encryption import blind_index

logger = logging.getLogger(__name__)

# Reserves send slots for a batch of recipients in one round trip.
# KEYS[1]: the channel's bucket; KEYS[2..]: one bucket per recipient, in send order.
# ARGV: the channel's and a recipient's emission interval, the longest wait that may be
# reserved, and the lead: no slot sooner than that (all in microseconds); then, for a
# slot that replaces one its send missed, how late it is (else -1). Returns, per
# recipient, 1 and the wait until its slot (reserved: the caller sends then), or 0 and
# the wait (nothing taken). A stored value is the earliest time the bucket's next send
# may go.
# A replacement does not wait for its recipient's bucket while that only holds the
# interval after the very slot it missed (it would wait a whole interval, 1 s on
# Telegram, for nothing; the send before it to that recipient went at least an interval
# before that slot). When a later send to the recipient reserved since (the bucket is
# half an interval further or more), it waits for that one as usual.
_RESERVE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local channel_interval = tonumber(ARGV[1])
local recipient_interval = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local earliest = now + tonumber(ARGV[4])
local late = tonumber(ARGV[5])
local channel_next = math.max(tonumber(redis.call('GET', KEYS[1]) or now), earliest)
local reserved_any = false
local answer = {}
for i = 2, #KEYS do
  local recipient_next = math.max(tonumber(redis.call('GET', KEYS[i]) or now), earliest)
  if late >= 0 and recipient_next < now - late + recipient_interval * 1.5 then
    recipient_next = earliest
  end
  local slot = math.max(channel_next, recipient_next)
  if slot - now <= max_wait then
    channel_next = slot + channel_interval
    reserved_any = true
    redis.call('SET', KEYS[i], slot + recipient_interval, 'PX',
               math.ceil((slot + recipient_interval - now) / 1000) + 1000)
    answer[#answer + 1] = 1
  else
    answer[#answer + 1] = 0
  end
  answer[#answer + 1] = slot - now
end
if reserved_any then
  redis.call('SET', KEYS[1], channel_next, 'PX', math.ceil((channel_next - now) / 1000) + 1000)
end
return answer
"""


def recipient_key(channel: str, recipient: str) -> str:
    return f"ratelimit:{channel}:{blind_index(channel, recipient)[:32]}"


@dataclass(frozen=True)
class Reservation:
    reserved: bool  # True: a send may go after `wait`; False: nothing was taken
    wait: float  # seconds


@dataclass(frozen=True)
class ChannelLimit:
    per_second: float
    per_recipient_per_second: float


def limit_for(channel: str) -> ChannelLimit | None:
    if not settings.DELIVERY_RATE_LIMIT_ENABLED:
        return None
    rates = settings.CHANNEL_RATE_LIMITS.get(channel)
    return ChannelLimit(*rates) if rates else None


def reserve_slots(
    channel: str,
    recipients: list[str],
    max_wait: float = 0.0,
    lead: float = 0.0,
    *,
    replacing_late_by: float | None = None,
) -> list[Reservation]:
    """A slot per recipient, in order: reserved when it comes within `max_wait` seconds,
    and none sooner than `lead` seconds (the caller's own work before it can send).

    A batch reserves its sends ahead and each goes at its slot, so the limit holds across
    workers without anyone polling; a recipient that is refused takes nothing, and does
    not stop the others in the batch (its chat, not the channel, may be the limit).
    """
    limit = limit_for(channel)
    if limit is None:
        return [Reservation(True, 0.0) for _ in recipients]
    if not recipients:
        return []
    # A recipient's key names their blind index, never the chat id or phone number.
    keys = [f"ratelimit:{channel}", *(recipient_key(channel, r) for r in recipients)]
    answer = run_script(
        _RESERVE,
        keys,
        [
            int(1_000_000 / limit.per_second),
            int(1_000_000 / limit.per_recipient_per_second),
            int(max_wait * 1_000_000),
            int(lead * 1_000_000),
            -1 if replacing_late_by is None else int(replacing_late_by * 1_000_000),
        ],
    )
    reservations = [
        Reservation(bool(answer[i]), int(answer[i + 1]) / 1_000_000)
        for i in range(0, len(answer), 2)
    ]
    for reservation in reservations:
        if reservation.reserved:
            metrics.rate_limit_wait_seconds.labels(channel).observe(reservation.wait)
        else:
            metrics.rate_limit_deferred.labels(channel).inc()
    return reservations


def take_token(channel: str, recipient: str) -> float:
    """0.0 when the send may go now (a token is taken), else the seconds to wait."""
    [slot] = reserve_slots(channel, [recipient])
    return 0.0 if slot.reserved else slot.wait


class SendSlot:
    """When one send may go: a moment (time.monotonic()) reserved from the shared limiter.

    A send that wakes up late for its slot (a busy machine, a slow first connection)
    takes a new one instead of going: late sends bunch up with punctual ones, and a bunch
    can put more than the provider's limit into one second. A quarter of an interval late
    is on time, and never less than LATE_FLOOR: at 1,000/s a quarter interval is 0.25 ms,
    less than a sleep overshoots, so every send missed its slot, took a new one and missed
    that too (86 of 500 sent in a minute). Sends up to L late put at most
    floor(rate x (1 + L)) + 1 sends into any second: with L = 20 ms, 995 at 975/s (under a
    provider's 1,000/s) and 30 at 29/s (Telegram's 30/s). At 10 ms, a busy 2-core machine
    missed 900 to 1,100 slots in 20,000 sends at 975/s, each a slot lost; at 20 ms, 160
    to 170 (make bench, scenario 9).
    """

    LATE_FLOOR = 0.02

    REPLACEMENT_MAX_WAIT = 5.0

    def __init__(self, moment: float, channel: str = "", recipient: str = "") -> None:
        self.moment, self.channel, self.recipient = moment, channel, recipient
        self.reserved = True
        limit = limit_for(channel) if channel else None
        self.tolerance = max(0.25 / limit.per_second, self.LATE_FLOOR) if limit else None

    @classmethod
    def after(cls, previous: float, channel: str, recipient: str) -> "SendSlot":
        """A slot for the next part of a message whose previous part was answered at
        `previous` (time.monotonic()): reserved when asked, not before one recipient
        interval after that, so the two never reach the provider closer than the limit."""
        limit = limit_for(channel)
        interval = 1 / limit.per_recipient_per_second if limit else 0.0
        slot = cls(previous + interval, channel, recipient)
        slot.reserved = False
        return slot

    def delay(self) -> float | None:
        """Seconds to sleep before asking again, or None: send now."""
        now = time.monotonic()
        if now < self.moment:
            return self.moment - now
        if self.reserved and (self.tolerance is None or now - self.moment <= self.tolerance):
            return None
        late = now - self.moment if self.reserved else None
        try:
            [slot] = reserve_slots(self.channel, [self.recipient], self.REPLACEMENT_MAX_WAIT,
                                   replacing_late_by=late)  # fmt: skip
        except RedisError as exc:
            raise TransientError("limiter_unavailable", "the shared rate limiter is "
                                 "unreachable", retry_after=5.0) from exc  # fmt: skip
        if self.reserved:
            metrics.rate_limit_slots_missed.labels(self.channel).inc()
            logger.info("a send missed its rate-limit slot by %.0f ms; took a new one",
                        (now - self.moment) * 1000)  # fmt: skip
        self.reserved, self.moment = slot.reserved, time.monotonic() + slot.wait
        return None if slot.reserved and slot.wait <= 0 else slot.wait
