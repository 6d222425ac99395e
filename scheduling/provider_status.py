"""What became of a message after the provider accepted it (Twilio's status callbacks).

The delivery's own status (sent) stays as it is: it says what we did; `provider_status`
says what the provider saw after. Callbacks may come in any order and at once, so the
status only moves forward, in one conditional UPDATE. Statuses Twilio uses for other
channels (read, received, ...) are ignored.
"""

import logging

from django.utils import timezone

from patients.models import Channel
from scheduling.models import Delivery

logger = logging.getLogger(__name__)

# Twilio's message statuses by how far the message got; a final one is never replaced.
STATUS_RANK = {
    "queued": 0, "accepted": 0, "scheduled": 0,
    "sending": 1,
    "sent": 2,
    "delivered": 3, "undelivered": 3, "failed": 3, "canceled": 3,
}  # fmt: skip
FAILED_STATUSES = frozenset({"undelivered", "failed"})


def record_twilio_status(sid: str, status: str, error_code: str) -> None:
    now = timezone.now()
    earlier = [name for name, rank in STATUS_RANK.items() if rank < STATUS_RANK[status]]
    changes: dict[str, object] = {
        "provider_status": status, "provider_status_at": now, "updated_at": now
    }  # fmt: skip
    if status in FAILED_STATUSES:
        code = error_code if error_code.isascii() and error_code.isdigit() else "unknown"
        changes["error_code"] = f"twilio_{code}"[:64]
        changes["error_text"] = f"Twilio reported the SMS {status} (error {code})."
    # The filter on the earlier statuses makes a late or concurrent callback a no-op.
    moved = Delivery.objects.filter(
        provider_message_id=sid, channel=Channel.SMS, provider_status__in=["", *earlier]
    ).update(**changes)
    logger.info("twilio status %s for message %s: %d delivery moved", status, sid, moved)
