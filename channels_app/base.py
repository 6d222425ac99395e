"""The one small interface every channel adapter implements.

An adapter turns a provider's answer into a SendResult or one of three errors; nothing
outside the adapter reads a provider's response.
"""

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from channels_app import metrics
from channels_app.attachments import Attachment

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutboundMessage:
    delivery_id: int
    patient_id: int
    channel: str
    address: str
    text: str
    format: str  # "text" or "html"
    # (label, callback data) pairs shown under the message where the channel has buttons
    # (Telegram: an inline keyboard on the last part); other channels ignore them.
    buttons: tuple[tuple[str, str], ...] = ()
    # The patient's language, for what the channel adds around the text (an e-mail's
    # subject); "" is the site's language.
    language: str = ""
    # A photo, voice note or document (channels_app.attachments): the adapter sends it as
    # a part of its own, first, with the text as its caption where that fits.
    attachment: Attachment | None = None


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str


class ChannelError(Exception):
    """A send that did not succeed; `code` is short and stable, `reason` is for people."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class TransientError(ChannelError):
    """Worth trying again later; `retry_after` is the provider's wish, in seconds."""

    def __init__(self, code: str, reason: str, retry_after: float | None = None) -> None:
        super().__init__(code, reason)
        self.retry_after = retry_after


class PermanentError(ChannelError):
    """Trying again cannot help (bad address, rejected content, channel not configured)."""


class RecipientBlocked(ChannelError):
    """The patient blocked us on this channel; their schedules there must stop."""


@dataclass(frozen=True)
class Timed:
    """What one send of a batch came to, and how long the provider took."""

    answer: SendResult | ChannelError
    seconds: float


def answer_outcome(answer: SendResult | ChannelError) -> str:
    """sent, transient, permanent or blocked: what the caller must do next, as a label."""
    if isinstance(answer, TransientError):
        return "transient"
    if isinstance(answer, RecipientBlocked):
        return "blocked"
    if isinstance(answer, ChannelError):
        return "permanent"
    return "sent"


def provider_timed(channel: str, answer: SendResult | ChannelError, started: float) -> Timed:
    """The answer with the time since `started` (time.monotonic()), counted per channel."""
    timed = Timed(answer, time.monotonic() - started)
    metrics.provider_answered(channel, answer_outcome(answer), timed.seconds)
    return timed


def internal_error(message: OutboundMessage) -> PermanentError:
    """For an exception that is not a provider's answer: a bug in an adapter fails that
    one delivery with a reason instead of crashing the worker or the batch."""
    logger.exception("delivery %s: unexpected error in the %s adapter",
                     message.delivery_id, message.channel)  # fmt: skip
    return PermanentError("internal_error", "unexpected error while sending; see logs")


def send_timed(send, message: OutboundMessage) -> Timed:
    """Calls `send`, turning every failure into a ChannelError, and times the provider."""
    started = time.monotonic()
    try:
        answer = send(message)
    except ChannelError as error:
        answer = error
    except Exception:
        answer = internal_error(message)
    return provider_timed(message.channel, answer, started)


class Slot(Protocol):
    """When a send may go (channels_app.ratelimit.SendSlot)."""

    def delay(self) -> float | None: ...  # seconds to sleep first, or None: go now


class Now:
    """A send that waits for nothing."""

    def delay(self) -> None:
        return None


def send_when_due(send, message: OutboundMessage, slot: Slot) -> Timed:
    """Waits for the slot (which may fail: the shared limiter out of reach), then sends."""
    try:
        while (pause := slot.delay()) is not None:
            time.sleep(pause)
    except ChannelError as error:
        return Timed(error, 0.0)
    return send_timed(send, message)


class ChannelAdapter:
    name: str = ""

    def send(self, message: OutboundMessage) -> SendResult:
        raise NotImplementedError

    def parts(self, message: OutboundMessage) -> list[OutboundMessage]:
        """The message as the provider takes it, one send per part, in order; buttons go
        with the last. Each part is sent as a message of its own: it takes its own
        rate-limit slot, and it is recorded once accepted, so a retry goes on from the
        first part not accepted. Sending a part again changes nothing in it."""
        return [message]

    def send_batch(self, batch: list[tuple[OutboundMessage, Slot]]) -> list[Timed]:
        """Sends each message when its slot says so, one after the other. Adapters that
        talk to a remote provider overlap the waits instead."""
        return [send_when_due(self.send, message, slot) for message, slot in batch]


class _Threads:
    pid = 0
    pool: ThreadPoolExecutor | None = None


def _thread_pool(size: int) -> ThreadPoolExecutor:
    # One pool per process: after a fork the parent's threads do not exist.
    if _Threads.pid != os.getpid() or _Threads.pool is None:
        _Threads.pid, _Threads.pool = os.getpid(), ThreadPoolExecutor(size, "send")
    return _Threads.pool


class ConcurrentHttpAdapter(ChannelAdapter):
    """For adapters that make blocking HTTP calls: a batch's sends overlap in threads,
    so a provider answering in 150 ms does not cost 150 ms per message."""

    threads = 32

    def send_batch(self, batch: list[tuple[OutboundMessage, Slot]]) -> list[Timed]:
        if len(batch) < 2:
            return super().send_batch(batch)
        pool = _thread_pool(self.threads)
        futures = [pool.submit(send_when_due, self.send, message, slot)
                   for message, slot in batch]  # fmt: skip
        return [future.result() for future in futures]
