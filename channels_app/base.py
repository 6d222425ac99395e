"""The one small interface every channel adapter implements.

An adapter turns a provider's answer into a SendResult or one of three errors; nothing
outside the adapter reads a provider's response.
"""

from dataclasses import dataclass


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


class ChannelAdapter:
    name: str = ""

    def send(self, message: OutboundMessage) -> SendResult:
        raise NotImplementedError
