"""Celery tasks: each loads ids and calls a plain function."""

import logging
from collections import Counter

from celery import shared_task
from django.db import InterfaceError, OperationalError

from scheduling import adherence, delivery, dispatch, heartbeat, recovery
from scheduling.queueing import (
    CARE_TEAM_ALERT_TASK,
    DELIVER_TASK,
    PUBLISH_RETRY_POLICY,
    batch_ids,
)

logger = logging.getLogger(__name__)
DATABASE_RETRY_SECONDS = 3


@shared_task(name="scheduling.dispatch_due")
def dispatch_due() -> int:
    dispatched = dispatch.dispatch_due()
    heartbeat.record_tick()
    return dispatched


@shared_task(name="scheduling.reap_stuck_deliveries")
def reap_stuck_deliveries() -> dict:
    result = recovery.reap_stuck_deliveries()
    return {"lease_expired": result.lease_expired, "requeued": result.requeued}


@shared_task(name=DELIVER_TASK, bind=True)
def deliver_message(self, delivery_ids: list[int] | int) -> dict[str, int]:
    """Delivers a batch of one channel's deliveries. A single id is accepted too, so a
    task published by an older release still runs after an upgrade."""
    ids = batch_ids(delivery_ids)
    if ids is None:
        logger.error("deliver_message: ignored a task whose argument is not delivery ids")
        return {"invalid": 1}
    try:
        outcomes = delivery.deliver_batch(ids)
    except (OperationalError, InterfaceError):
        # PostgreSQL is briefly away: come back in a few seconds, on the same queue,
        # instead of leaving the deliveries to the reaper's much longer round.
        logger.warning("deliveries %s: database unavailable, trying again shortly", ids)
        queue = (self.request.delivery_info or {}).get("routing_key")
        self.apply_async((ids,), queue=queue, countdown=DATABASE_RETRY_SECONDS,
                         retry_policy=PUBLISH_RETRY_POLICY)  # fmt: skip
        return {"database_unavailable": len(ids)}
    return dict(Counter(outcome.status for outcome in outcomes))


@shared_task(name="scheduling.mark_missed_doses")
def mark_missed_doses() -> int:
    return adherence.mark_missed_doses()


@shared_task(name=CARE_TEAM_ALERT_TASK)
def send_care_team_alert(alert_id: int) -> None:
    retry_in = adherence.send_alert(alert_id)
    if retry_in is not None:
        adherence.enqueue_alert(alert_id, countdown=retry_in)
