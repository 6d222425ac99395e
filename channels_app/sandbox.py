"""Records what would have been sent, for development stacks without credentials.

Settings refuse CHANNEL_SANDBOX outside DJANGO_DEBUG, so production never uses this.
"""

from channels_app.base import ChannelAdapter, OutboundMessage, SendResult
from channels_app.models import SandboxMessage


class SandboxChannel(ChannelAdapter):
    def __init__(self, name: str) -> None:
        self.name = name

    def send(self, message: OutboundMessage) -> SendResult:
        row = SandboxMessage.objects.create(
            channel=message.channel,
            address=message.address,
            delivery_id=message.delivery_id,
            text=message.text,
            parse_mode="HTML" if message.format == "html" else "",
        )
        return SendResult(provider_message_id=f"sandbox-{row.pk}")
