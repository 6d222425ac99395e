"""Which adapter serves a channel, from settings."""

from django.conf import settings

from channels_app.base import ChannelAdapter
from channels_app.sandbox import SandboxChannel
from channels_app.web import WebInboxChannel

# Channels that reach the patient at an address of theirs (a Contact row).
ADDRESSED_CHANNELS = frozenset({"telegram", "whatsapp", "sms", "email"})


def adapter_for(channel: str) -> ChannelAdapter:
    if channel == "web":
        return WebInboxChannel()
    if channel not in settings.CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    if settings.CHANNEL_SANDBOX:
        return SandboxChannel(channel)
    return _FACTORIES[channel]()


def _telegram() -> ChannelAdapter:
    from channels_app.telegram import TelegramChannel

    return TelegramChannel(
        token=settings.TELEGRAM_BOT_TOKEN,
        base_url=settings.TELEGRAM_API_BASE_URL,
        timeout=settings.TELEGRAM_TIMEOUT_SECONDS,
        connections=max(8, settings.DELIVERY_BATCH_SIZE),
    )


def _whatsapp() -> ChannelAdapter:
    from channels_app.whatsapp import WhatsAppChannel

    return WhatsAppChannel(
        token=settings.WHATSAPP_TOKEN,
        phone_number_id=settings.WHATSAPP_PHONE_NUMBER_ID,
        base_url=settings.WHATSAPP_API_BASE_URL,
        timeout=settings.WHATSAPP_TIMEOUT_SECONDS,
    )


def _sms() -> ChannelAdapter:
    from django.urls import reverse

    from channels_app.sms import TwilioSmsChannel

    callback = ""
    if settings.PUBLIC_BASE_URL:
        callback = settings.PUBLIC_BASE_URL + reverse("twilio-status")
    return TwilioSmsChannel(
        account_sid=settings.TWILIO_ACCOUNT_SID,
        auth_token=settings.TWILIO_AUTH_TOKEN,
        from_number=settings.TWILIO_FROM_NUMBER,
        messaging_service_sid=settings.TWILIO_MESSAGING_SERVICE_SID,
        base_url=settings.TWILIO_API_BASE_URL,
        timeout=settings.TWILIO_TIMEOUT_SECONDS,
        status_callback_url=callback,
    )


def _email() -> ChannelAdapter:
    from channels_app.email import EmailChannel

    return EmailChannel()


_FACTORIES = {"telegram": _telegram, "whatsapp": _whatsapp, "sms": _sms, "email": _email}
