"""Sends one delivery: claim it, re-check it, send it, record what happened.

No database lock is held while the provider is called. The claim moves the row to
"sending" with a lease; a second task for the same delivery (tasks may run twice)
finds it final or leased and leaves it alone. If the worker dies during the send,
the reaper sees the lease run out and queues it again: that is the one window in
which a patient can get a message twice, and it is counted (attempt "interrupted").
"""

import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, transaction
from django.utils import timezone
from redis.exceptions import RedisError

from channels_app.base import (
    ChannelError,
    OutboundMessage,
    PermanentError,
    RecipientBlocked,
    SendResult,
    TransientError,
)
from channels_app.bot.acknowledgements import acknowledgement_buttons, wants_buttons
from channels_app.breaker import breaker_allow, breaker_record
from channels_app.ratelimit import take_token
from channels_app.registry import ADDRESSED_CHANNELS, adapter_for
from patients.models import Contact
from scheduling.models import (
    AttemptOutcome,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    MessageStatus,
)
from scheduling.services import patient_channel_blocked, reachable_contact

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryOutcome:
    status: str
    channel: str = ""
    retry_in: float | None = None  # seconds until deliver_message should run again
    waiting_for: str = ""  # "rate_limit" or "breaker": a wait, not an attempt


@dataclass(frozen=True)
class _Claim:
    delivery: Delivery
    attempt: DeliveryAttempt
    outbound: OutboundMessage


def retry_delay(attempt_number: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter, never sooner than the provider asked."""
    ceiling = min(
        settings.DELIVERY_RETRY_MAX_SECONDS,
        settings.DELIVERY_RETRY_BASE_SECONDS * 2 ** (attempt_number - 1),
    )
    jittered = random.uniform(0, ceiling)  # noqa: S311 - spreading retries, not security
    return max(jittered, retry_after or 0.0)


def deliver(delivery_id: int) -> DeliveryOutcome:
    claim = _claim_when_allowed(delivery_id)
    if not isinstance(claim, _Claim):
        return claim
    channel = claim.delivery.channel
    adapter = adapter_for(channel)
    started = time.monotonic()
    try:
        result = adapter.send(claim.outbound)
    except ChannelError as error:
        _tell_breaker(channel, error)
        return _with_database_retries(lambda: _record_failure(claim, error, started))
    except Exception:
        # A bug, not a provider answer: fail this delivery with a reason instead of
        # crashing the worker or retrying blindly.
        logger.exception("delivery %s: unexpected error in the %s adapter", delivery_id, adapter)
        error = PermanentError("internal_error", "unexpected error while sending; see logs")
        return _with_database_retries(lambda: _record_failure(claim, error, started))
    _tell_breaker(channel, None)
    return _with_database_retries(lambda: _record_sent(claim, result, started))


def _with_database_retries(record, pauses: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)):
    """Records what the provider answered, trying again through a short database outage:
    the send has happened, and a lost record would send it a second time."""
    for pause in pauses:
        try:
            return record()
        except (OperationalError, InterfaceError):
            logger.warning("database unavailable while recording a send; retrying")
            close_old_connections()
            time.sleep(pause)
    return record()


def _claim_when_allowed(delivery_id: int) -> "_Claim | DeliveryOutcome":
    """Claims the delivery; a short rate-limit wait is slept here (holding no lock),
    a longer one, or an open breaker, goes back to the caller to re-queue."""
    slept = 0.0
    while True:
        claim = _claim(delivery_id)
        if isinstance(claim, _Claim) or claim.waiting_for != "rate_limit":
            return claim
        if slept + claim.retry_in > settings.DELIVERY_RATE_INLINE_WAIT_SECONDS:
            return claim
        time.sleep(claim.retry_in)
        slept += claim.retry_in


def _wait_before_sending(channel: str, recipient: str) -> tuple[float, str]:
    """(seconds to wait, why) from the shared rate limiter and the channel's breaker."""
    if channel not in ADDRESSED_CHANNELS:
        return 0.0, ""
    try:
        wait = take_token(channel, recipient)
        if wait > 0:
            return wait, "rate_limit"
        decision = breaker_allow(channel)
    except RedisError:
        # Without the shared limits we do not send; the task comes back later.
        logger.warning("redis unreachable: delivery waits (limits and breaker are shared)")
        return 5.0, "breaker"
    if not decision.allowed:
        return decision.wait + random.uniform(0, 1), "breaker"  # noqa: S311 - spreading
    return 0.0, ""


def _tell_breaker(channel: str, error: ChannelError | None) -> None:
    """Only failures that say the provider is unwell count; a refusal of one recipient
    or a 429 (the provider pacing us) shows it is up."""
    if channel not in ADDRESSED_CHANNELS:
        return
    failed = isinstance(error, TransientError) and error.code != "rate_limited"
    try:
        breaker_record(channel, success=not failed)
    except RedisError:
        logger.warning("redis unreachable: breaker %s not updated", channel)


@transaction.atomic
def _claim(delivery_id: int) -> "_Claim | DeliveryOutcome":
    delivery = (
        Delivery.objects.select_for_update(of=("self",))
        .select_related("message", "message__patient", "contact")
        .filter(pk=delivery_id)
        .first()
    )
    if delivery is None:
        logger.warning("delivery %s does not exist", delivery_id)
        return DeliveryOutcome("missing")
    now = timezone.now()
    if delivery.is_final:
        return DeliveryOutcome(delivery.status)
    if delivery.status == DeliveryStatus.SENDING:
        if delivery.lease_until and delivery.lease_until > now:
            return DeliveryOutcome(delivery.status)  # another worker is sending it
        _close_interrupted_attempts(delivery, now)
    if delivery.next_attempt_at > now + timedelta(seconds=1):
        # An early copy of the task (a retry published twice): come back on time.
        wait = (delivery.next_attempt_at - now).total_seconds()
        return DeliveryOutcome(delivery.status, delivery.channel, retry_in=wait)

    stop = _reason_not_to_send(delivery, now)
    if stop is not None:
        status, code, text = stop
        _finish(delivery, status, code, text, now)
        return DeliveryOutcome(status)

    contact = _contact_for(delivery)
    if delivery.channel in ADDRESSED_CHANNELS and contact is None:
        _finish(delivery, DeliveryStatus.FAILED, "no_contact", "no unblocked contact", now)
        return DeliveryOutcome(DeliveryStatus.FAILED)

    address = contact.address if contact else str(delivery.message.patient_id)
    wait, reason = _wait_before_sending(delivery.channel, address)
    if wait > 0:
        if reason == "breaker" or wait > settings.DELIVERY_RATE_INLINE_WAIT_SECONDS:
            # Re-queued for later: say so on the row, so the reaper does not take a
            # delivery that is only waiting its turn for one whose task was lost.
            delivery.next_attempt_at = now + timedelta(seconds=wait)
            delivery.save(update_fields=["next_attempt_at", "updated_at"])
        return DeliveryOutcome(delivery.status, delivery.channel, wait, waiting_for=reason)

    delivery.status = DeliveryStatus.SENDING
    delivery.attempts += 1
    delivery.lease_until = now + timedelta(seconds=settings.DELIVERY_LEASE_SECONDS)
    delivery.contact = contact
    delivery.save(update_fields=["status", "attempts", "lease_until", "contact", "updated_at"])
    attempt = DeliveryAttempt.objects.create(
        delivery=delivery, number=delivery.attempts, started_at=now
    )
    message = delivery.message
    outbound = OutboundMessage(
        delivery_id=delivery.pk,
        patient_id=message.patient_id,
        channel=delivery.channel,
        address=address,
        text=message.content,
        format=message.format,
        buttons=(
            acknowledgement_buttons(delivery.pk, address, message.patient.language)
            if wants_buttons(message, delivery.channel)
            else ()
        ),
    )
    return _Claim(delivery, attempt, outbound)


def _reason_not_to_send(delivery: Delivery, now: datetime) -> tuple[str, str, str] | None:
    message = delivery.message
    if message.status == MessageStatus.CANCELLED:
        return DeliveryStatus.CANCELLED, "message_cancelled", "the message was cancelled"
    if message.status == MessageStatus.PAUSED:
        return DeliveryStatus.CANCELLED, "message_paused", "the message is paused"
    if message.patient.opted_out_at is not None:
        return DeliveryStatus.CANCELLED, "patient_opted_out", "the patient opted out"
    if now > delivery.expires_at:
        return DeliveryStatus.EXPIRED, "window_passed", "the delivery window had passed"
    if delivery.attempts_used >= settings.DELIVERY_MAX_ATTEMPTS:
        return DeliveryStatus.FAILED, "max_attempts", delivery.error_text or "too many attempts"
    return None


def _contact_for(delivery: Delivery) -> Contact | None:
    if delivery.channel not in ADDRESSED_CHANNELS:
        return None
    if delivery.contact_id and delivery.contact and delivery.contact.blocked_at is None:
        return delivery.contact
    return reachable_contact(delivery.message.patient, delivery.channel)


def _close_interrupted_attempts(delivery: Delivery, now: datetime) -> None:
    DeliveryAttempt.objects.filter(delivery=delivery, outcome=AttemptOutcome.IN_PROGRESS).update(
        outcome=AttemptOutcome.INTERRUPTED,
        finished_at=now,
        error_code="worker_lost",
        error_text="the worker stopped before recording an outcome; the send may have happened",
    )


def _finish(delivery: Delivery, status: str, code: str, text: str, now: datetime) -> None:
    delivery.status = status
    delivery.error_code = code
    delivery.error_text = text
    delivery.lease_until = None
    delivery.save(update_fields=["status", "error_code", "error_text", "lease_until", "updated_at"])
    logger.info("delivery %s %s (%s)", delivery.pk, status, code)


def _close_attempt(claim: _Claim, outcome: str, started: float, error: ChannelError | None):
    attempt = claim.attempt
    attempt.outcome = outcome
    attempt.finished_at = timezone.now()
    attempt.duration_ms = int((time.monotonic() - started) * 1000)
    attempt.error_code = error.code if error else ""
    attempt.error_text = error.reason if error else ""
    attempt.save(
        update_fields=["outcome", "finished_at", "duration_ms", "error_code", "error_text"]
    )


@transaction.atomic
def _record_sent(claim: _Claim, result: SendResult, started: float) -> DeliveryOutcome:
    _close_attempt(claim, AttemptOutcome.SENT, started, None)
    delivery = claim.delivery
    delivery.status = DeliveryStatus.SENT
    delivery.sent_at = timezone.now()
    delivery.provider_message_id = result.provider_message_id
    delivery.lease_until = None
    delivery.error_code = ""
    delivery.error_text = ""
    delivery.save(
        update_fields=[
            "status", "sent_at", "provider_message_id", "lease_until", "error_code",
            "error_text", "updated_at",
        ]
    )  # fmt: skip
    logger.info("delivery %s sent on %s (attempt %d)", delivery.pk, delivery.channel,
                delivery.attempts)  # fmt: skip
    return DeliveryOutcome(DeliveryStatus.SENT, delivery.channel)


@transaction.atomic
def _record_failure(claim: _Claim, error: ChannelError, started: float) -> DeliveryOutcome:
    delivery = claim.delivery
    now = timezone.now()
    delivery.error_code = error.code
    delivery.error_text = error.reason
    if isinstance(error, TransientError):
        _close_attempt(claim, AttemptOutcome.TRANSIENT, started, error)
        delay = retry_delay(delivery.attempts, error.retry_after)
        retry_at = now + timedelta(seconds=delay)
        if delivery.attempts_used >= settings.DELIVERY_MAX_ATTEMPTS:
            _finish(delivery, DeliveryStatus.FAILED, error.code, error.reason, now)
            return DeliveryOutcome(DeliveryStatus.FAILED, delivery.channel)
        if retry_at > delivery.expires_at:
            _finish(delivery, DeliveryStatus.EXPIRED, error.code, error.reason, now)
            return DeliveryOutcome(DeliveryStatus.EXPIRED, delivery.channel)
        delivery.status = DeliveryStatus.QUEUED
        delivery.next_attempt_at = retry_at
        delivery.lease_until = None
        delivery.save(
            update_fields=["status", "next_attempt_at", "lease_until", "error_code",
                           "error_text", "updated_at"]
        )  # fmt: skip
        logger.info("delivery %s: %s, retry in %.1fs", delivery.pk, error.code, delay)
        return DeliveryOutcome(DeliveryStatus.QUEUED, delivery.channel, retry_in=delay)
    if isinstance(error, RecipientBlocked):
        _close_attempt(claim, AttemptOutcome.BLOCKED, started, error)
        _block_contact(delivery, error, now)
        _finish(delivery, DeliveryStatus.FAILED, "recipient_blocked", error.reason, now)
        return DeliveryOutcome(DeliveryStatus.FAILED, delivery.channel)
    _close_attempt(claim, AttemptOutcome.PERMANENT, started, error)
    _finish(delivery, DeliveryStatus.FAILED, error.code, error.reason, now)
    return DeliveryOutcome(DeliveryStatus.FAILED, delivery.channel)


def _block_contact(delivery: Delivery, error: ChannelError, now: datetime) -> None:
    if delivery.contact_id:
        Contact.objects.filter(pk=delivery.contact_id).update(
            blocked_at=now, blocked_reason=error.reason[:255]
        )
    patient_channel_blocked(
        delivery.message.patient_id,
        delivery.channel,
        reason=f"patient blocked us on {delivery.channel}: {error.reason}",
    )
    logger.warning(
        "delivery %s: patient %s blocked %s (contact %s); their schedules there moved or paused",
        delivery.pk, delivery.message.patient_id, delivery.channel, delivery.contact_id,
    )  # fmt: skip
