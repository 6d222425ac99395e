import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from scheduling.dispatch import dispatch_due, due_messages
from scheduling.models import Delivery, DeliveryStatus, MessageStatus, ScheduledMessage
from scheduling.queueing import queue_capacity
from scheduling.services import message_schedule
from tests.conftest import ago, from_now


def schedule_many(patient, count, starts_at, **kwargs):
    return [
        message_schedule(patient=patient, content=f"m{i}", starts_at=starts_at, **kwargs)
        for i in range(count)
    ]


def test_it_creates_one_queued_delivery_per_due_message_and_completes_one_time_messages(patient):
    due = schedule_many(patient, 3, ago(5))
    future = message_schedule(patient=patient, content="later", starts_at=from_now(600))

    assert dispatch_due() == 3

    for message in due:
        message.refresh_from_db()
        assert message.status == MessageStatus.COMPLETED
        assert message.next_run_at is None
        delivery = message.deliveries.get()
        assert delivery.status == DeliveryStatus.QUEUED
        assert delivery.occurrence_at == message.starts_at
        assert delivery.expires_at == message.starts_at + timedelta(
            seconds=message.delivery_window_seconds
        )
    assert not future.deliveries.exists()


def test_it_enqueues_each_delivery_on_its_channel_queue_only_after_commit(
    transactional_db, make_patient, broker
):
    telegram_patient, web_patient = make_patient(), make_patient(chat_id=None)
    message_schedule(patient=telegram_patient, content="a", starts_at=ago(1))
    message_schedule(patient=web_patient, content="b", starts_at=ago(1))

    with transaction.atomic():
        dispatch_due()
        assert broker.queue_length("deliver.telegram") == 0, "published before commit"
    assert broker.queue_length("deliver.telegram") == 1
    assert broker.queue_length("deliver.web") == 1


def test_after_an_outage_only_the_latest_occurrence_is_sent_and_the_rest_expire(patient):
    start = timezone.now() - timedelta(days=3, minutes=10)
    message = message_schedule(
        patient=patient, content="daily", starts_at=start, recurrence="FREQ=DAILY"
    )
    # The dispatcher has been down since the first occurrence, three days ago.
    ScheduledMessage.objects.filter(pk=message.pk).update(
        next_occurrence_at=message.starts_at, next_run_at=message.starts_at
    )

    assert dispatch_due() == 1
    assert dispatch_due() == 0

    deliveries = list(message.deliveries.order_by("occurrence_at"))
    assert [d.occurrence_at for d in deliveries] == [
        message.starts_at + timedelta(days=n) for n in range(4)
    ]
    assert [(d.status, d.error_code) for d in deliveries] == [
        (DeliveryStatus.EXPIRED, "superseded")] * 3 + [(DeliveryStatus.QUEUED, "")]  # fmt: skip
    message.refresh_from_db()
    assert message.status == MessageStatus.ACTIVE
    assert message.next_run_at == message.starts_at + timedelta(days=4)


def test_a_latest_occurrence_past_its_window_is_recorded_expired_not_sent(patient, broker):
    start = timezone.now() - timedelta(days=2, hours=2)
    message = message_schedule(patient=patient, content="daily", starts_at=start,
                               recurrence="FREQ=DAILY", delivery_window_seconds=3600)  # fmt: skip
    ScheduledMessage.objects.filter(pk=message.pk).update(
        next_occurrence_at=message.starts_at, next_run_at=message.starts_at
    )

    dispatch_due()

    assert sorted(message.deliveries.values_list("error_code", flat=True)) == [
        "superseded", "superseded", "window_passed"]  # fmt: skip
    assert not message.deliveries.exclude(status=DeliveryStatus.EXPIRED).exists()
    assert broker.queue_length("deliver.telegram") == 0


def test_a_recurring_message_created_with_a_past_start_begins_at_its_next_occurrence(patient):
    start = timezone.now() - timedelta(days=3) + timedelta(minutes=1)
    message = message_schedule(
        patient=patient, content="daily", starts_at=start, recurrence="FREQ=DAILY"
    )

    assert message.next_run_at == message.starts_at + timedelta(days=3)
    assert dispatch_due() == 0
    assert not message.deliveries.exists()


def test_a_dispatched_occurrence_is_never_given_a_second_delivery(patient):
    message = message_schedule(patient=patient, content="once", starts_at=ago(1))
    dispatch_due()
    first = message.deliveries.get()
    # An operator (or a bug) puts the message back on the same occurrence.
    ScheduledMessage.objects.filter(pk=message.pk).update(
        status=MessageStatus.ACTIVE, next_run_at=message.starts_at
    )

    dispatch_due()

    assert list(message.deliveries.all()) == [first]


@pytest.mark.django_db(transaction=True)
def test_two_dispatchers_at_once_create_each_delivery_exactly_once(make_patient, broker):
    patients = [make_patient() for _ in range(3)]
    for p in patients:
        schedule_many(p, 100, ago(10))
    barrier = threading.Barrier(2)
    claimed = []

    def run() -> None:
        try:
            barrier.wait()
            claimed.append(dispatch_due(batch_size=20))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(claimed) == 300
    assert Delivery.objects.count() == 300
    assert Delivery.objects.values("message").distinct().count() == 300
    # Each published once, or held in the database for a later tick (the queue takes
    # DISPATCH_QUEUE_SECONDS of sends at the rate limit).
    queued = broker.queued_deliveries("deliver.telegram")
    held = list(Delivery.objects.filter(held_at__isnull=False).values_list("pk", flat=True))
    assert 0 < len(queued) <= queue_capacity("telegram")
    assert sorted(queued + held) == sorted(Delivery.objects.values_list("pk", flat=True))


@pytest.mark.django_db(transaction=True)
def test_a_dispatcher_skips_rows_another_dispatcher_holds(patient, broker):
    schedule_many(patient, 5, ago(1))
    locked = threading.Event()
    release = threading.Event()

    def hold_rows() -> None:
        with transaction.atomic():
            list(due_messages(timezone.now(), 100, urgent=False))
            locked.set()
            release.wait(10)
        connection.close()

    holder = threading.Thread(target=hold_rows)
    holder.start()
    assert locked.wait(10)
    try:
        assert dispatch_due() == 0, "waited for or re-claimed rows another dispatcher holds"
        assert Delivery.objects.count() == 0
    finally:
        release.set()
        holder.join()
    assert dispatch_due() == 5


def test_an_idle_tick_reads_only_the_due_index_and_writes_nothing(patient):
    template = message_schedule(patient=patient, content="later", starts_at=from_now(3600))
    ScheduledMessage.objects.bulk_create(
        [ScheduledMessage(**{**model_to_dict(template, exclude=["id", "organization", "patient"]),
                             "organization_id": template.organization_id, "patient": patient})
         for _ in range(2000)]
    )  # fmt: skip
    before = list(ScheduledMessage.objects.values_list("updated_at", flat=True).order_by("id"))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE scheduling_scheduledmessage")

    with CaptureQueriesContext(connection) as queries:
        assert dispatch_due() == 0

    statements = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
    # The due urgent messages, the other due ones, then the held deliveries due: three
    # index reads.
    assert len(statements) == 3 and all(s.startswith("SELECT") for s in statements), statements
    assert '"held_at" IS NOT NULL' in statements[2]
    after = list(ScheduledMessage.objects.values_list("updated_at", flat=True).order_by("id"))
    assert after == before
    for urgent, index in ((True, "message_due_urgent_idx"), (False, "message_due_idx")):
        query = due_messages(timezone.now(), 500, urgent=urgent)
        sql, params = query.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN {sql}", params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert index in plan, plan


def test_dispatching_costs_the_same_queries_for_ten_messages_as_for_one(make_patient):
    """Dispatch reads only some columns of a message and its patient; one it had left out
    would be loaded by a query per message."""
    from datetime import time as clock

    def dispatch_queries(count: int) -> int:
        for _ in range(count):
            patient = make_patient(zone="America/New_York")
            patient.quiet_hours_start, patient.quiet_hours_end = clock(22), clock(7)
            patient.save()
            message = message_schedule(
                patient=patient,
                content="daily",
                starts_at=ago(30),
                recurrence="FREQ=DAILY",
                zone_name="Asia/Tokyo",
            )
            ScheduledMessage.objects.filter(pk=message.pk).update(
                next_occurrence_at=message.starts_at, next_run_at=message.starts_at
            )
        with CaptureQueriesContext(connection) as queries:
            assert dispatch_due() == count
        return len(queries.captured_queries)

    assert dispatch_queries(1) == dispatch_queries(10)
    assert Delivery.objects.count() == 11
    assert not ScheduledMessage.objects.filter(next_run_at__lte=timezone.now()).exists()


@pytest.mark.django_db(transaction=True)
def test_an_occurrence_already_sent_is_not_enqueued_again_and_a_queued_one_is(make_patient, broker):
    sent, queued = (message_schedule(patient=make_patient(), content=name, starts_at=ago(1))
                    for name in ("sent", "queued"))  # fmt: skip
    dispatch_due()
    Delivery.objects.filter(message=sent).update(status=DeliveryStatus.SENT)
    broker.flush()
    # An operator (or a bug) puts both messages back on the occurrence they just had.
    for message in (sent, queued):
        ScheduledMessage.objects.filter(pk=message.pk).update(
            status=MessageStatus.ACTIVE, next_run_at=message.starts_at
        )

    dispatch_due()

    assert broker.queued_deliveries("deliver.telegram") == [queued.deliveries.get().pk]
    assert sent.deliveries.get().status == DeliveryStatus.SENT
