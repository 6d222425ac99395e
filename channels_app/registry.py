"""Which adapter serves a channel, from settings."""

from django.conf import settings

from channels_app.base import ChannelAdapter
from channels_app.sandbox import SandboxChannel
from channels_app.telegram import TelegramChannel
from channels_app.web import WebInboxChannel

# Channels that reach the patient at an address of theirs (a Contact row).
ADDRESSED_CHANNELS = frozenset({"telegram"})


def adapter_for(channel: str) -> ChannelAdapter:
    if channel == "web":
        return WebInboxChannel()
    if channel not in settings.CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    if settings.CHANNEL_SANDBOX:
        return SandboxChannel(channel)
    return TelegramChannel(
        token=settings.TELEGRAM_BOT_TOKEN,
        base_url=settings.TELEGRAM_API_BASE_URL,
        timeout=settings.TELEGRAM_TIMEOUT_SECONDS,
    )
