"""Medication adherence: reminders left unanswered become "missed", the care team may be
told, and each patient's taken / missed / skipped counts are summed for the admin.

A reminder is missed when its message has ack_timeout_minutes and that long has passed
since the delivery was sent without an answer. The periodic task (every
ACK_CHECK_SECONDS) records it with the same one-per-delivery Acknowledgement a press
would write, so a press and the task can never both count. If the patient's
organization has an alert contact, a CareTeamAlert is queued after commit; its task
sends it through the channel's adapter, within the shared rate limit, with capped
retries.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, DateTimeField, DurationField, ExpressionWrapper, F, Q, Value
from django.utils import timezone
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from channels_app.base import ChannelError, OutboundMessage, TransientError
from channels_app.ratelimit import take_token
from channels_app.registry import adapter_for
from patients.models import Patient
from scheduling.delivery import retry_delay
from scheduling.models import (
    AckAction,
    Acknowledgement,
    AlertStatus,
    CareTeamAlert,
    Delivery,
    DeliveryStatus,
)
from scheduling.queueing import CARE_TEAM_ALERT_TASK, publish_task

logger = logging.getLogger(__name__)

# Deliveries older than this are not looked at: ack_timeout_minutes is at most a day.
LOOKBACK = timedelta(days=2)
ALERT_REQUEUE_AFTER = timedelta(minutes=5)
WINDOWS = (7, 30)


def mark_missed_doses(*, now: datetime | None = None) -> int:
    """Records every sent reminder whose answer is overdue as missed; returns how many."""
    now = now or timezone.now()
    deadline = ExpressionWrapper(
        F("sent_at")
        + Value(timedelta(minutes=1), output_field=DurationField())
        * F("message__ack_timeout_minutes"),
        output_field=DateTimeField(),
    )
    overdue = (
        Delivery.objects.filter(status=DeliveryStatus.SENT, occurrence_at__gte=now - LOOKBACK,
                                message__ack_timeout_minutes__isnull=False,
                                acknowledgement__isnull=True)
        .annotate(deadline=deadline)
        .filter(deadline__lte=now)
        .select_related("message__organization", "message__patient")
        .order_by("id")
    )  # fmt: skip
    missed = sum(_mark_missed(delivery, now) for delivery in overdue)
    requeue_stuck_alerts(now=now)
    if missed:
        logger.info("%d reminders marked missed", missed)
    return missed


def _mark_missed(delivery: Delivery, now: datetime) -> bool:
    try:
        with transaction.atomic():
            ack = Acknowledgement.objects.create(delivery=delivery, action=AckAction.MISSED, at=now)
            alert = _alert_for(ack, delivery, now)
    except IntegrityError:
        return False  # the patient answered meanwhile, or another run recorded it
    logger.info("delivery %s missed (patient %s)", delivery.pk, delivery.message.patient_id)
    if alert is not None:
        transaction.on_commit(partial(enqueue_alert, alert.pk))
    return True


def _alert_for(ack: Acknowledgement, delivery: Delivery, now: datetime) -> CareTeamAlert | None:
    organization = delivery.message.organization
    if not organization.alert_channel or not organization.alert_address:
        return None
    return CareTeamAlert.objects.create(
        acknowledgement=ack, organization=organization, channel=organization.alert_channel,
        address=organization.alert_address, next_attempt_at=now,
    )  # fmt: skip


def enqueue_alert(alert_id: int, countdown: float | None = None) -> None:
    try:
        publish_task(CARE_TEAM_ALERT_TASK, (alert_id,), countdown=countdown,
                     queue=settings.DELIVERY_QUEUES[_alert_channel(alert_id)])  # fmt: skip
    except OperationalError:
        logger.warning("broker unreachable; care team alert %s left for the next check", alert_id)


def _alert_channel(alert_id: int) -> str:
    return CareTeamAlert.objects.values_list("channel", flat=True).get(pk=alert_id)


def requeue_stuck_alerts(*, now: datetime) -> int:
    """Alerts whose task was lost (Redis restarted) are queued again."""
    stuck = CareTeamAlert.objects.filter(
        status=AlertStatus.QUEUED, next_attempt_at__lte=now - ALERT_REQUEUE_AFTER
    ).values_list("pk", flat=True)[:100]
    for alert_id in stuck:
        CareTeamAlert.objects.filter(pk=alert_id).update(next_attempt_at=now)
        enqueue_alert(alert_id)
    return len(stuck)


def alert_text(alert: CareTeamAlert) -> str:
    """Ids and times only: the alert may be read on a lock screen or a shared phone."""
    delivery = alert.acknowledgement.delivery
    patient = delivery.message.patient
    sent = (delivery.sent_at or delivery.occurrence_at).astimezone(patient.zone)
    text = (
        f"Missed dose: patient #{patient.pk} did not answer reminder #{delivery.message_id} "
        f"sent {sent:%Y-%m-%d %H:%M} ({patient.timezone})."
    )
    if settings.PUBLIC_BASE_URL:
        text += f" {settings.PUBLIC_BASE_URL}/admin/patients/patient/{patient.pk}/change/"
    return text


def send_alert(alert_id: int) -> float | None:
    """Sends one alert; returns seconds until it should be tried again, else None."""
    alert = (
        CareTeamAlert.objects.select_related("acknowledgement__delivery__message__patient")
        .filter(pk=alert_id, status=AlertStatus.QUEUED)
        .first()
    )
    if alert is None:
        return None
    try:
        wait = take_token(alert.channel, alert.address)
    except RedisError:
        wait = 5.0
    if wait > 0:
        return wait
    patient = alert.acknowledgement.delivery.message.patient
    outbound = OutboundMessage(
        delivery_id=alert.acknowledgement.delivery_id, patient_id=patient.pk,
        channel=alert.channel, address=alert.address, text=alert_text(alert), format="text",
    )  # fmt: skip
    alert.attempts += 1
    try:
        adapter_for(alert.channel).send(outbound)
    except ChannelError as error:
        return _alert_failed(alert, error)
    alert.status, alert.sent_at, alert.error_code, alert.error_text = (
        AlertStatus.SENT, timezone.now(), "", "")  # fmt: skip
    alert.save(update_fields=["status", "sent_at", "attempts", "error_code", "error_text"])
    logger.info("care team alert %s sent on %s", alert.pk, alert.channel)
    return None


def _alert_failed(alert: CareTeamAlert, error: ChannelError) -> float | None:
    alert.error_code, alert.error_text = error.code, error.reason
    retry = isinstance(error, TransientError) and alert.attempts < settings.DELIVERY_MAX_ATTEMPTS
    delay = retry_delay(alert.attempts, error.retry_after) if retry else None
    if delay is None:
        alert.status = AlertStatus.FAILED
    else:
        alert.next_attempt_at = timezone.now() + timedelta(seconds=delay)
    alert.save(update_fields=["status", "attempts", "next_attempt_at", "error_code",
                              "error_text"])  # fmt: skip
    logger.warning("care team alert %s: %s (attempt %d)", alert.pk, error.code, alert.attempts)
    return delay


@dataclass(frozen=True)
class AdherenceCounts:
    days: int
    taken: int
    missed: int
    skipped: int

    @property
    def taken_share(self) -> float | None:
        total = self.taken + self.missed + self.skipped
        return self.taken / total if total else None


def patient_adherence(patient: Patient, *, now: datetime | None = None) -> list[AdherenceCounts]:
    """Taken / missed / skipped over the last 7 and 30 days. A snooze is not counted:
    its repeat is the dose that gets the answer."""
    now = now or timezone.now()
    counts = {}
    acks = Acknowledgement.objects.filter(delivery__message__patient=patient,
                                          at__gte=now - timedelta(days=max(WINDOWS)))  # fmt: skip
    for days in WINDOWS:
        since = now - timedelta(days=days)
        counts[days] = acks.aggregate(
            **{action: Count("pk", filter=Q(action=action, at__gte=since))
               for action in (AckAction.TAKEN, AckAction.MISSED, AckAction.SKIPPED)}
        )  # fmt: skip
    return [AdherenceCounts(days, **counts[days]) for days in WINDOWS]
