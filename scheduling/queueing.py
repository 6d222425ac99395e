"""Hands delivery ids to the broker. Call only after the rows are committed."""

import logging

from django.conf import settings
from kombu.exceptions import OperationalError

logger = logging.getLogger(__name__)

# Give up quickly when Redis is down: the rows stay queued in the database, and the
# reaper hands them to the broker again once it is back.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5}


def enqueue_deliveries(items: list[tuple[int, str]], countdown: float | None = None) -> int:
    """Publish deliver_message for each (delivery id, channel); returns how many went out."""
    from scheduling.tasks import deliver_message

    for published, (delivery_id, channel) in enumerate(items):
        try:
            deliver_message.apply_async(
                (delivery_id,),
                queue=settings.DELIVERY_QUEUES[channel],
                countdown=countdown,
                retry_policy=PUBLISH_RETRY_POLICY,
            )
        except OperationalError:
            logger.warning(
                "broker unreachable; %d deliveries left for the reaper (first id %s)",
                len(items) - published,
                delivery_id,
            )
            return published
    return len(items)
