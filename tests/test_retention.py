"""Data retention: what is deleted (and what never is), per kind, in bounded batches."""

from datetime import timedelta

import pytest
from auditlog.models import LogEntry
from django.utils import timezone

from channels_app.models import InboxMessage, SandboxMessage
from operations.models import JobOutcome, JobRun
from operations.retention import clean_up_old_data
from patients.models import Channel, InboundUpdate, InboxLink, LinkToken
from scheduling.dispatch import dispatch_due
from scheduling.models import (
    AckAction,
    Acknowledgement,
    AttemptOutcome,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    MessageStatus,
    ScheduledMessage,
)
from scheduling.services import message_schedule
from tests.conftest import from_now

DAY = timedelta(days=1)


@pytest.fixture(autouse=True)
def no_pause(settings):
    settings.RETENTION_PAUSE_SECONDS = 0


def days_ago(days: float):
    return timezone.now() - days * DAY


def delivery(message, status, occurrence_at, *, attempts: int = 0) -> Delivery:
    row = Delivery.objects.create(
        message=message,
        occurrence_at=occurrence_at,
        channel=message.channel,
        status=status,
        next_attempt_at=occurrence_at,
        expires_at=occurrence_at + timedelta(hours=1),
    )
    for number in range(1, attempts + 1):
        DeliveryAttempt.objects.create(
            delivery=row, number=number, started_at=occurrence_at, outcome=AttemptOutcome.SENT
        )
    return row


@pytest.fixture
def daily(patient):
    return message_schedule(
        patient=patient,
        content="Take your tablets",
        starts_at=from_now(60),
        recurrence="FREQ=DAILY",
    )


def test_shipped_defaults_delete_final_deliveries_after_a_year_with_their_attempts(daily, settings):
    assert settings.RETENTION_SENT_DELIVERIES_DAYS == 365
    gone = [
        delivery(daily, status, days_ago(400 + i), attempts=2)
        for i, status in enumerate(["sent", "failed", "expired", "cancelled"])
    ]
    Acknowledgement.objects.create(delivery=gone[0], action=AckAction.TAKEN, at=days_ago(400))
    kept = [
        delivery(daily, DeliveryStatus.SENT, days_ago(300), attempts=1),  # within the year
        delivery(daily, DeliveryStatus.QUEUED, days_ago(500)),  # still in flight
        delivery(daily, DeliveryStatus.SENDING, days_ago(500), attempts=1),
    ]

    report = clean_up_old_data()

    assert set(Delivery.objects.values_list("pk", flat=True)) == {d.pk for d in kept}
    assert not DeliveryAttempt.objects.filter(delivery_id__in=[d.pk for d in gone]).exists()
    assert DeliveryAttempt.objects.count() == 2
    assert not Acknowledgement.objects.exists()
    assert report.deleted["deliveries"] == 4


def test_the_delivery_of_a_one_time_message_still_open_is_kept(patient):
    """It is what stops the message being edited after it went out."""
    once = message_schedule(patient=patient, content="Appointment", starts_at=from_now(60))
    paused_once = message_schedule(patient=patient, content="Other", starts_at=from_now(60))
    ScheduledMessage.objects.filter(pk=paused_once.pk).update(status=MessageStatus.PAUSED)
    done = message_schedule(patient=patient, content="Done", starts_at=from_now(60))
    ScheduledMessage.objects.filter(pk=done.pk).update(status=MessageStatus.COMPLETED)
    kept = [delivery(once, "sent", days_ago(400)), delivery(paused_once, "sent", days_ago(400))]
    delivery(done, "sent", days_ago(400))

    clean_up_old_data(kinds=["deliveries"])

    assert set(Delivery.objects.values_list("pk", flat=True)) == {d.pk for d in kept}


def test_a_deleted_old_delivery_is_not_made_again_by_the_dispatcher(daily):
    old = delivery(daily, DeliveryStatus.SENT, days_ago(400))
    clean_up_old_data(kinds=["deliveries"])
    assert not Delivery.objects.filter(pk=old.pk).exists()

    # Two days on: the message's due occurrences are dispatched, and only those.
    dispatched = dispatch_due(now=timezone.now() + 2 * DAY)

    assert dispatched == 1
    occurrences = list(Delivery.objects.values_list("occurrence_at", flat=True))
    assert occurrences and all(at > timezone.now() for at in occurrences)


def test_deliveries_go_in_batches_of_the_configured_size(daily, settings):
    settings.RETENTION_BATCH_SIZE = 100
    moment = days_ago(400)
    Delivery.objects.bulk_create(
        Delivery(
            message=daily,
            occurrence_at=moment - i * timedelta(minutes=1),
            channel="telegram",
            status="sent",
            next_attempt_at=moment,
            expires_at=moment,
        )
        for i in range(250)
    )

    report = clean_up_old_data(kinds=["deliveries"])

    assert report.deleted["deliveries"] == 250
    assert report.batches == 3  # 100, 100, 50
    assert not Delivery.objects.exists()


def test_each_kind_goes_after_its_own_retention_and_the_rest_stays(patient, settings):
    settings.RETENTION_SANDBOX_DAYS = 7
    old, recent = days_ago(400), days_ago(1)
    inbox = [InboxMessage.objects.create(patient=patient, body="hello") for _ in range(2)]
    InboxMessage.objects.filter(pk=inbox[0].pk).update(created_at=old)
    sandbox = [
        SandboxMessage.objects.create(channel="telegram", address="1", text="t") for _ in range(2)
    ]
    SandboxMessage.objects.filter(pk=sandbox[0].pk).update(created_at=days_ago(8))
    used = LinkToken.objects.create(patient=patient, token_hash="a", expires_at=old)
    live = LinkToken.objects.create(patient=patient, token_hash="b", expires_at=from_now(600))
    LinkToken.objects.filter(pk__in=[used.pk, live.pk]).update(created_at=old)
    ended = InboxLink.objects.create(patient=patient, token_hash="c", expires_at=old)
    InboxLink.objects.filter(pk=ended.pk).update(created_at=old)
    processed = InboundUpdate.objects.create(channel=Channel.TELEGRAM, external_id="1")
    pending = InboundUpdate.objects.create(channel=Channel.TELEGRAM, external_id="2")
    InboundUpdate.objects.filter(pk=processed.pk).update(received_at=old, processed_at=old)
    InboundUpdate.objects.filter(pk=pending.pk).update(received_at=old)
    audit_old, audit_new = LogEntry.objects.filter(object_pk=str(patient.pk))[:1].get(), None
    LogEntry.objects.filter(pk=audit_old.pk).update(timestamp=days_ago(2200))
    audit_new = LogEntry.objects.create(
        content_type=audit_old.content_type, object_pk="x", object_repr="x", action=0
    )
    runs = [
        JobRun.objects.create(
            job="j", started_at=at, finished_at=at, duration_ms=1, outcome=JobOutcome.OK
        )
        for at in (days_ago(31), recent)
    ]

    report = clean_up_old_data()

    assert list(InboxMessage.objects.values_list("pk", flat=True)) == [inbox[1].pk]
    assert list(SandboxMessage.objects.values_list("pk", flat=True)) == [sandbox[1].pk]
    assert list(LinkToken.objects.values_list("pk", flat=True)) == [live.pk]
    assert not InboxLink.objects.exists()
    assert list(InboundUpdate.objects.values_list("pk", flat=True)) == [pending.pk]
    assert not LogEntry.objects.filter(pk=audit_old.pk).exists()
    assert LogEntry.objects.filter(pk=audit_new.pk).exists()
    assert list(JobRun.objects.values_list("pk", flat=True)) == [runs[1].pk]
    assert report.deleted == {
        "deliveries": 0,
        "inbox_messages": 1,
        "sandbox_messages": 1,
        "link_tokens": 2,
        "inbound_updates": 1,
        "audit_entries": 1,
        "job_history": 1,
    }


def test_a_walk_along_the_primary_key_stops_at_the_first_recent_row(patient, settings):
    """Rows are created in id order: past the first recent one, none is old enough."""
    settings.RETENTION_BATCH_SIZE = 100
    rows = SandboxMessage.objects.bulk_create(
        SandboxMessage(channel="telegram", address="1", text="t") for _ in range(130)
    )
    SandboxMessage.objects.filter(pk__lte=rows[119].pk).update(created_at=days_ago(30))

    report = clean_up_old_data(kinds=["sandbox_messages"])

    assert report.deleted["sandbox_messages"] == 120
    assert report.batches == 2
    assert SandboxMessage.objects.count() == 10


def test_zero_days_keeps_a_kind_forever(patient, settings):
    settings.RETENTION_SANDBOX_DAYS = 0
    row = SandboxMessage.objects.create(channel="telegram", address="1", text="t")
    SandboxMessage.objects.filter(pk=row.pk).update(created_at=days_ago(5000))

    report = clean_up_old_data()

    assert SandboxMessage.objects.filter(pk=row.pk).exists()
    assert "sandbox_messages" not in report.deleted


def test_a_run_stops_at_its_time_cap_and_the_next_one_goes_on(daily, settings):
    settings.RETENTION_MAX_SECONDS = 0
    delivery(daily, "sent", days_ago(400))

    report = clean_up_old_data(kinds=["deliveries"])

    assert report.stopped_early and Delivery.objects.count() == 1
    settings.RETENTION_MAX_SECONDS = 240
    assert clean_up_old_data(kinds=["deliveries"]).deleted["deliveries"] == 1
