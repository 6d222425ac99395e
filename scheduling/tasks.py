"""Celery tasks: each loads ids and calls a plain function."""

from celery import shared_task

from scheduling import delivery, dispatch, heartbeat, recovery
from scheduling.queueing import enqueue_deliveries


@shared_task(name="scheduling.dispatch_due")
def dispatch_due() -> int:
    dispatched = dispatch.dispatch_due()
    heartbeat.record_tick()
    return dispatched


@shared_task(name="scheduling.reap_stuck_deliveries")
def reap_stuck_deliveries() -> dict:
    result = recovery.reap_stuck_deliveries()
    return {"lease_expired": result.lease_expired, "requeued": result.requeued}


@shared_task(name="scheduling.deliver_message")
def deliver_message(delivery_id: int) -> str:
    outcome = delivery.deliver(delivery_id)
    if outcome.retry_in is not None:
        enqueue_deliveries([(delivery_id, outcome.channel)], countdown=outcome.retry_in)
    return outcome.status
