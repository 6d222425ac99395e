"""The web inbox: always reachable, so it is the fallback channel."""

from channels_app.base import ChannelAdapter, OutboundMessage, SendResult
from channels_app.models import InboxMessage


class WebInboxChannel(ChannelAdapter):
    name = "web"

    def send(self, message: OutboundMessage) -> SendResult:
        # One inbox row per delivery, however often the task runs.
        item, _ = InboxMessage.objects.get_or_create(
            delivery_id=message.delivery_id,
            defaults={
                "patient_id": message.patient_id,
                "body": message.text,
                "format": message.format,
            },
        )
        return SendResult(provider_message_id=f"inbox-{item.pk}")
