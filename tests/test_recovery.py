import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from scheduling.delivery import deliver
from scheduling.dispatch import dispatch_due
from scheduling.models import Delivery, DeliveryStatus
from scheduling.queueing import enqueue_deliveries
from scheduling.recovery import reap_stuck_deliveries
from scheduling.services import message_schedule
from tests.conftest import ago


def dispatched(patient, count=1):
    for i in range(count):
        message_schedule(patient=patient, content=f"m{i}", starts_at=ago(1))
    dispatch_due()
    return list(Delivery.objects.order_by("id"))


def test_it_requeues_a_queued_delivery_whose_task_was_lost(
    django_capture_on_commit_callbacks, patient, broker, settings
):
    lost, fresh = dispatched(patient, 2)
    Delivery.objects.filter(pk=lost.pk).update(
        updated_at=timezone.now() - timedelta(seconds=settings.DELIVERY_REQUEUE_AFTER_SECONDS + 5)
    )

    with django_capture_on_commit_callbacks(execute=True):
        result = reap_stuck_deliveries()

    assert (result.requeued, result.lease_expired) == (1, 0)
    assert broker.queue_length("deliver.telegram") == 1
    lost.refresh_from_db()
    assert lost.updated_at > ago(5), "not given a fresh grace period"
    with django_capture_on_commit_callbacks(execute=True):
        assert reap_stuck_deliveries().requeued == 0


def test_it_requeues_a_send_whose_lease_ran_out(
    django_capture_on_commit_callbacks, patient, broker
):
    [delivery] = dispatched(patient)
    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.SENDING, attempts=1, lease_until=ago(1)
    )

    with django_capture_on_commit_callbacks(execute=True):
        result = reap_stuck_deliveries()

    assert result.lease_expired == 1
    assert broker.queue_length("deliver.telegram") == 1


def test_it_leaves_healthy_deliveries_alone(django_capture_on_commit_callbacks, patient, broker):
    [delivery] = dispatched(patient)
    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.SENDING, lease_until=timezone.now() + timedelta(seconds=60)
    )
    with django_capture_on_commit_callbacks(execute=True):
        result = reap_stuck_deliveries()
    assert (result.requeued, result.lease_expired) == (0, 0)
    assert broker.queue_length("deliver.telegram") == 0


def test_a_send_taken_over_from_a_lost_worker_goes_ahead_of_the_routine_backlog(
    django_capture_on_commit_callbacks, patient, broker
):
    lost, *backlog = dispatched(patient, 3)
    enqueue_deliveries([(d.pk, "telegram", 3) for d in backlog])
    Delivery.objects.filter(pk=lost.pk).update(
        status=DeliveryStatus.SENDING, attempts=1, lease_until=ago(1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert reap_stuck_deliveries().lease_expired == 1
    assert broker.queued_deliveries("deliver.telegram") == [lost.pk, *(d.pk for d in backlog)]


@pytest.mark.django_db(transaction=True)
def test_a_send_slower_than_its_lease_keeps_it_while_it_lasts_and_is_sent_once(
    settings, make_patient, broker, fake_telegram
):
    settings.DELIVERY_LEASE_SECONDS = 3  # renewed every second
    fake_telegram.configure(delay=4.5)
    message_schedule(patient=make_patient(), content="slow", starts_at=ago(1))
    dispatch_due()
    [delivery] = Delivery.objects.all()
    seen = {}

    def look_past_the_first_lease() -> None:
        try:
            time.sleep(3.5)  # past the lease taken at the claim
            row = Delivery.objects.get(pk=delivery.pk)
            seen.update(
                status=row.status,
                leased=row.lease_until > timezone.now(),
                reaped=reap_stuck_deliveries().lease_expired,
            )
        finally:
            connection.close()

    looking = threading.Thread(target=look_past_the_first_lease)
    looking.start()
    outcome = deliver(delivery.pk)  # in this thread, as a worker sends
    looking.join(10)
    assert seen == {"status": DeliveryStatus.SENDING, "leased": True, "reaped": 0}
    assert outcome.status == DeliveryStatus.SENT
    assert len(fake_telegram.sent()) == 1


def test_the_shipped_lease_and_reaper_take_over_a_dead_workers_send_within_30_s(settings):
    # The chaos test tests/chaos/test_node_loss.py measures it; this is the budget it
    # relies on: the lease runs out, the reaper's next round, one more heartbeat's slack.
    budget = settings.DELIVERY_LEASE_SECONDS + settings.DELIVERY_REAPER_SECONDS
    assert budget <= 20
    assert settings.DELIVERY_LEASE_SECONDS / 3 >= 1, "a heartbeat more than once a second"
