"""Celery tasks: each loads ids and calls a plain function."""

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

from scheduling import adherence, delivery, dispatch, heartbeat, recovery
from scheduling.queueing import PUBLISH_RETRY_POLICY, enqueue_deliveries

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


@shared_task(name="scheduling.deliver_message", bind=True)
def deliver_message(self, delivery_id: int) -> str:
    try:
        outcome = delivery.deliver(delivery_id)
    except (OperationalError, InterfaceError):
        # PostgreSQL is briefly away: come back in a few seconds, on the same queue,
        # instead of leaving the delivery to the reaper's much longer round.
        logger.warning("delivery %s: database unavailable, trying again shortly", delivery_id)
        queue = (self.request.delivery_info or {}).get("routing_key")
        self.apply_async((delivery_id,), queue=queue, countdown=DATABASE_RETRY_SECONDS,
                         retry_policy=PUBLISH_RETRY_POLICY)  # fmt: skip
        return "database_unavailable"
    if outcome.retry_in is not None:
        enqueue_deliveries([(delivery_id, outcome.channel)], countdown=outcome.retry_in)
    return outcome.status


@shared_task(name="scheduling.mark_missed_doses")
def mark_missed_doses() -> int:
    return adherence.mark_missed_doses()


@shared_task(name="scheduling.send_care_team_alert")
def send_care_team_alert(alert_id: int) -> None:
    retry_in = adherence.send_alert(alert_id)
    if retry_in is not None:
        adherence.enqueue_alert(alert_id, countdown=retry_in)
