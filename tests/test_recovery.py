from datetime import timedelta

from django.utils import timezone

from scheduling.dispatch import dispatch_due
from scheduling.models import Delivery, DeliveryStatus
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
        next_attempt_at=timezone.now()
        - timedelta(seconds=settings.DELIVERY_REQUEUE_AFTER_SECONDS + 5)
    )

    with django_capture_on_commit_callbacks(execute=True):
        result = reap_stuck_deliveries()

    assert (result.requeued, result.lease_expired) == (1, 0)
    assert broker.queue_length("deliver.telegram") == 1
    lost.refresh_from_db()
    assert lost.next_attempt_at > ago(5), "not given a fresh grace period"
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
