"""Sends a batch of deliveries: claim them, re-check them, send them, record the outcomes.

A batch is claimed in one transaction, its sends overlap (each at the rate-limit slot
reserved for it), and the sent ones are recorded in one transaction: the per-message
cost is a few rows written, not a task, a connection and a round trip each.
A long message goes in parts (the adapter says how), each a send of its own with its own
slot from both the channel's and the recipient's bucket. Parts go in rounds, the first
part of every delivery, then the second, and each round's accepted parts are recorded
before the next round starts: a retry, or a delivery taken over from a lost worker, goes
on from the first part not recorded. A delivery is sent when its last part is. A photo,
voice note or document is the first part (with the text as its caption where it fits), so
a retry after a 429 never sends an accepted photo again.
No database lock is held while the provider is called. The claim moves the row to
"sending" with a lease, renewed by a heartbeat while the sends last (leases.py); a second
task for the same delivery (tasks may run twice) finds it final or leased and leaves it
alone. If the worker dies during the send, the reaper sees the lease run out and queues
it again: that is the one window in which a patient can get a message twice, and it is
counted (attempt "interrupted").
A delivery that must wait (for a rate-limit slot, the breaker, or a retry's backoff) goes
back to the database, held until its moment; the dispatcher's tick publishes it then
(queueing.py). No task waits in a worker's memory, where a lost worker would take it along.
"""

import logging
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, transaction
from django.utils import timezone
from redis.exceptions import RedisError

from channels_app.base import (
    ChannelError,
    Now,
    OutboundMessage,
    RecipientBlocked,
    SendResult,
    Slot,
    Timed,
    TransientError,
)
from channels_app.breaker import breaker_allow, breaker_record
from channels_app.ratelimit import SendSlot, reserve_slots
from channels_app.registry import ADDRESSED_CHANNELS, adapter_for
from patients.models import Contact
from scheduling import metrics
from scheduling.acknowledgements import acknowledgement_buttons, wants_buttons
from scheduling.attachments import attachment_for_sending, message_attachment
from scheduling.bulk_sql import update_rows
from scheduling.leases import LeaseHeartbeat
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
    retry_in: float | None = None  # seconds until it may be tried again (held until then)
    waiting_for: str = ""  # "rate_limit" or "breaker": a wait, not an attempt
    delivery_id: int = 0


@dataclass(frozen=True)
class _Claim:
    delivery: Delivery
    attempt: DeliveryAttempt
    parts: list[OutboundMessage]  # those not accepted yet, in order
    slot: Slot  # when the first may go: the rate-limit slot reserved for it


@dataclass
class _Ready:
    """A delivery that may be sent, once it has rate-limit slots and the breaker agrees."""

    delivery: Delivery
    contact: Contact | None
    address: str
    parts: list[OutboundMessage] = field(default_factory=list)  # those still to send
    wait: float = 0.0  # seconds from its first part's slot reservation
    moment: float = 0.0  # time.monotonic() of that slot, when it has one


def retry_delay(attempt_number: int, retry_after: float | None) -> float:
    """The wait after try `attempt_number` failed: the fixed schedule when one is set,
    else exponential backoff with full jitter; never sooner than the provider asked."""
    schedule = settings.DELIVERY_RETRY_SCHEDULE_SECONDS
    if schedule:
        return max(schedule[min(attempt_number, len(schedule)) - 1], retry_after or 0.0)
    ceiling = min(
        settings.DELIVERY_RETRY_MAX_SECONDS,
        settings.DELIVERY_RETRY_BASE_SECONDS * 2 ** (attempt_number - 1),
    )
    jittered = random.uniform(0, ceiling)  # noqa: S311 - spreading retries, not security
    return max(jittered, retry_after or 0.0)


def deliver(delivery_id: int) -> DeliveryOutcome:
    [outcome] = deliver_batch([delivery_id])
    return outcome


def deliver_batch(delivery_ids: list[int]) -> list[DeliveryOutcome]:
    """One outcome per distinct id, whatever became of it."""
    claims, outcomes = _claim_batch(sorted(set(delivery_ids)))
    by_channel: dict[str, list[_Claim]] = defaultdict(list)
    for claim in claims:
        by_channel[claim.delivery.channel].append(claim)
    with LeaseHeartbeat([claim.delivery.pk for claim in claims]):
        for channel, group in by_channel.items():
            outcomes += _send_in_rounds(channel, group)
    return outcomes


def _send_in_rounds(channel: str, claims: list[_Claim]) -> list[DeliveryOutcome]:
    """Round n sends part n of each delivery that has one, each at its slot; what the
    round's sends came to is recorded before the next round. A failed part ends its
    delivery's attempt; the parts after it are not sent."""
    adapter = adapter_for(channel)
    outcomes: list[DeliveryOutcome] = []
    seconds: dict[int, float] = defaultdict(float)  # each attempt's time at the provider
    pending, number, round_ended = claims, 0, 0.0
    while pending:
        finished = [c for c in pending if number >= len(c.parts)]
        if finished:
            outcomes += _with_database_retries(lambda f=finished: _record_sent(f, seconds))
        pending = [c for c in pending if number < len(c.parts)]
        if not pending:
            break
        sends = [
            (c.parts[number], _slot_for_part(c, number, round_ended) if number else c.slot)
            for c in pending
        ]
        answers = adapter.send_batch(sends)
        round_ended = time.monotonic()
        _tell_breaker(channel, [timed.answer for timed in answers])
        accepted = []
        for claim, timed in zip(pending, answers, strict=True):
            seconds[claim.delivery.pk] += timed.seconds
            if isinstance(timed.answer, SendResult):
                _note_part(claim.delivery, timed.answer)
                accepted.append(claim)
            else:
                failed = Timed(timed.answer, seconds[claim.delivery.pk])
                outcomes.append(_with_database_retries(
                    lambda claim=claim, failed=failed: _record_failure(claim, failed)))  # fmt: skip
        number += 1
        unfinished = [c for c in accepted if number < len(c.parts)]
        if unfinished:
            _with_database_retries(lambda u=unfinished: _record_parts(u))
        pending = accepted
    return outcomes


def _note_part(delivery: Delivery, result: SendResult) -> None:
    delivery.parts_sent += 1
    ids = [delivery.provider_message_id, result.provider_message_id]
    delivery.provider_message_id = ",".join(i for i in ids if i)


def _record_parts(claims: list[_Claim]) -> None:
    """The parts accepted so far, before the next is sent: a lost worker or a retry then
    sends only the ones after them. The lease starts again, since the sender is alive."""
    now = timezone.now()
    lease_until = now + timedelta(seconds=settings.DELIVERY_LEASE_SECONDS)
    for claim in claims:
        claim.delivery.updated_at, claim.delivery.lease_until = now, lease_until
    fields = ["parts_sent", "provider_message_id", "lease_until", "updated_at"]
    update_rows(Delivery, [c.delivery for c in claims], fields)


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


def _tell_breaker(channel: str, answers: list) -> None:
    """Only failures that say the provider is unwell count; a refusal of one recipient
    or a 429 (the provider pacing us) shows it is up. A batch's successes count once."""
    if channel not in ADDRESSED_CHANNELS:
        return
    failures = sum(1 for a in answers
                   if isinstance(a, TransientError) and a.code != "rate_limited")  # fmt: skip
    try:
        if failures < len(answers):
            breaker_record(channel, success=True)
        for _ in range(failures):
            breaker_record(channel, success=False)
    except RedisError:
        logger.warning("redis unreachable: breaker %s not updated", channel)


@transaction.atomic
def _claim_batch(delivery_ids: list[int]) -> tuple[list[_Claim], list[DeliveryOutcome]]:
    deliveries = list(
        Delivery.objects.select_for_update(of=("self",))
        .select_related("message", "message__patient", "message__attachment", "contact")
        .filter(pk__in=delivery_ids)
        .order_by("pk")
    )
    outcomes = []
    for missing in set(delivery_ids) - {d.pk for d in deliveries}:
        logger.warning("delivery %s does not exist", missing)
        outcomes.append(DeliveryOutcome("missing", delivery_id=missing))
    now = timezone.now()
    ready = []
    for delivery in deliveries:
        checked = _check(delivery, now)
        if isinstance(checked, DeliveryOutcome):
            outcomes.append(checked)
        else:
            ready.append(checked)
    go, waiting = _slots_and_breaker(ready)
    outcomes += _put_back(waiting, now)
    return _mark_sending(go, now), outcomes


def _check(delivery: Delivery, now: datetime) -> "_Ready | DeliveryOutcome":
    """Whether the delivery may go now; finishes it when it never will."""
    if delivery.is_final:
        return DeliveryOutcome(delivery.status, delivery_id=delivery.pk)
    if delivery.status == DeliveryStatus.SENDING:
        if delivery.lease_until and delivery.lease_until > now:
            return DeliveryOutcome(delivery.status, delivery_id=delivery.pk)  # being sent
        _close_interrupted_attempts(delivery, now)
    if delivery.next_attempt_at > now + timedelta(seconds=1):
        # An early copy of the task (one published twice): the delivery waits in the
        # database for its moment, and the dispatcher publishes it then.
        if delivery.held_at is None:
            delivery.held_at = now
            delivery.save(update_fields=["held_at", "updated_at"])
        wait = (delivery.next_attempt_at - now).total_seconds()
        return DeliveryOutcome(delivery.status, delivery.channel, retry_in=wait,
                               delivery_id=delivery.pk)  # fmt: skip
    stop = _reason_not_to_send(delivery, now)
    if stop is not None:
        status, code, text = stop
        _finish(delivery, status, code, text, now)
        return DeliveryOutcome(status, delivery_id=delivery.pk)
    contact = _contact_for(delivery)
    if delivery.channel in ADDRESSED_CHANNELS and contact is None:
        reason = "no verified, unblocked contact"
        _finish(delivery, DeliveryStatus.FAILED, "no_contact", reason, now)
        return DeliveryOutcome(DeliveryStatus.FAILED, delivery_id=delivery.pk)
    address = contact.address if contact else str(delivery.message.patient_id)
    return _Ready(delivery, contact, address)


def _slots_and_breaker(ready: list[_Ready]) -> tuple[list[_Ready], dict[str, list[_Ready]]]:
    """(may go, each at its .wait; waiting, by reason) from the shared rate limiter and
    each channel's breaker. A slot up to DELIVERY_RATE_INLINE_WAIT_SECONDS ahead is
    reserved and waited for; a further one means coming back later, as does an open
    breaker (one decision per batch: a half-open breaker lets one delivery probe)."""
    go, waiting = [], defaultdict(list)
    by_channel: dict[str, list[_Ready]] = defaultdict(list)
    for item in ready:
        by_channel[item.delivery.channel].append(item)
    for channel, items in by_channel.items():
        adapter = adapter_for(channel)
        for item in items:
            item.parts = adapter.parts(_outbound(item))[item.delivery.parts_sent :]
        if channel not in ADDRESSED_CHANNELS:
            go += items
            continue
        try:
            decision = breaker_allow(channel)
            if not decision.allowed:
                for item in items:
                    item.wait = decision.wait + random.uniform(0, 1)  # noqa: S311 - spreading
                waiting["breaker"] += items
                continue
            if decision.probe:
                waiting["breaker"] += [_waits(i, decision.wait + 1.0) for i in items[1:]]
                items = items[:1]
            inline = settings.DELIVERY_RATE_INLINE_WAIT_SECONDS
            slots = reserve_slots(channel, [i.address for i in items], inline, CLAIM_LEAD)
        except RedisError:
            # Without the shared limits we do not send; the deliveries come back later.
            logger.warning("redis unreachable: %d deliveries wait (limits are shared)", len(items))
            waiting["breaker"] += [_waits(i, 5.0) for i in items]
            continue
        # Slots are offsets from Redis's clock at the call; counted from when it returned
        # (never early), not from later, when the claim has been written.
        answered = time.monotonic()
        for item, slot in zip(items, slots, strict=True):
            item.wait, item.moment = slot.wait, answered + slot.wait
            (go if slot.reserved else waiting["rate_limit"]).append(item)
    return go, waiting


# The first slot a claim takes is at least this far ahead: the claim is written and
# committed between the reservation and the first send, and a send that starts later
# than its slot (beyond SendSlot's tolerance) must take a new one. At 1,000/s, claims
# eating 10-30 ms into their slots made most sends miss, and a miss at that rate tends
# to miss again (docs/benchmarks.md, scenario 9).
CLAIM_LEAD = 0.05


def _waits(item: _Ready, seconds: float) -> _Ready:
    item.wait = seconds
    return item


def _put_back(waiting: dict[str, list[_Ready]], now: datetime) -> list[DeliveryOutcome]:
    """Deliveries that wait their turn go back to the database, not as attempts: held
    until the breaker allows, or until their rate-limit slot is within the inline wait,
    when the dispatcher publishes them again: they reach a worker while the slots just
    ahead are still free, and no second of the limit goes unused between two ticks."""
    outcomes, rows = [], []
    for reason, items in waiting.items():
        early = settings.DELIVERY_RATE_INLINE_WAIT_SECONDS if reason == "rate_limit" else 0.0
        for item in items:
            delivery = item.delivery
            # One taken over from a lost worker is queued again, not left "sending": the
            # reaper would take it for lost once more, and the tick would not publish it.
            delivery.status, delivery.lease_until = DeliveryStatus.QUEUED, None
            delivery.next_attempt_at = now + timedelta(seconds=max(0.0, item.wait - early))
            delivery.held_at = delivery.updated_at = now
            rows.append(delivery)
            outcomes.append(
                DeliveryOutcome(delivery.status, delivery.channel, item.wait, reason, delivery.pk)
            )
    fields = ["status", "lease_until", "next_attempt_at", "held_at", "updated_at"]
    update_rows(Delivery, rows, fields)
    return outcomes


def _mark_sending(go: list[_Ready], now: datetime) -> list[_Claim]:
    if not go:
        return []
    lease_until = now + timedelta(seconds=settings.DELIVERY_LEASE_SECONDS)
    for item in go:
        delivery = item.delivery
        delivery.status = DeliveryStatus.SENDING
        delivery.attempts += 1
        delivery.lease_until = lease_until
        delivery.held_at = None
        delivery.contact = item.contact
        delivery.updated_at = now
    deliveries = [item.delivery for item in go]
    fields = ["status", "attempts", "lease_until", "held_at", "contact", "updated_at"]
    update_rows(Delivery, deliveries, fields)
    attempts = DeliveryAttempt.objects.bulk_create(
        [DeliveryAttempt(delivery=d, number=d.attempts, started_at=now) for d in deliveries]
    )
    return [
        _Claim(item.delivery, attempt, item.parts, _slot(item))
        for item, attempt in zip(go, attempts, strict=True)
    ]


def _slot(item: _Ready) -> Slot:
    if item.delivery.channel in ADDRESSED_CHANNELS:
        return SendSlot(item.moment, item.delivery.channel, item.address)
    return Now()  # the web inbox has no rate limit


def _slot_for_part(claim: _Claim, number: int, previous_answered: float) -> Slot:
    """A later part's slot is reserved when its round comes (slots are taken in time
    order, none held while the earlier parts go), and not before a recipient's interval
    after the previous part was answered: its slot may have gone out a little late."""
    channel = claim.delivery.channel
    if channel not in ADDRESSED_CHANNELS:
        return Now()
    return SendSlot.after(previous_answered, channel, claim.parts[number].address)


def _outbound(item: _Ready) -> OutboundMessage:
    delivery, message = item.delivery, item.delivery.message
    attachment = message_attachment(message)
    return OutboundMessage(
        delivery_id=delivery.pk,
        patient_id=message.patient_id,
        channel=delivery.channel,
        address=item.address,
        text=message.content,
        format=message.format,
        buttons=(
            acknowledgement_buttons(delivery.pk, item.address, message.patient.language)
            if wants_buttons(message, delivery.channel)
            else ()
        ),
        language=message.patient.language,
        attachment=(
            attachment_for_sending(attachment, delivery.channel, item.address)
            if attachment is not None
            else None
        ),
    )


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
    contact = delivery.contact if delivery.contact_id else None
    if contact is not None and contact.blocked_at is None and contact.verified_at is not None:
        return contact
    return reachable_contact(delivery.message.patient, delivery.channel)


def _close_interrupted_attempts(delivery: Delivery, now: datetime) -> None:
    closed = DeliveryAttempt.objects.filter(
        delivery=delivery, outcome=AttemptOutcome.IN_PROGRESS
    ).update(
        outcome=AttemptOutcome.INTERRUPTED,
        finished_at=now,
        error_code="worker_lost",
        error_text="the worker stopped before recording an outcome; the send may have happened",
    )
    for _ in range(closed):
        metrics.attempt_ended(delivery.channel, AttemptOutcome.INTERRUPTED, "worker_lost")


def _finish(delivery: Delivery, status: str, code: str, text: str, now: datetime) -> None:
    delivery.status = status
    delivery.error_code = code
    delivery.error_text = text
    delivery.lease_until = None
    delivery.save(update_fields=["status", "error_code", "error_text", "lease_until", "updated_at"])
    metrics.delivery_ended(delivery.channel, status, code)
    logger.info("delivery %s %s (%s)", delivery.pk, status, code)


def _close_attempt(claim: _Claim, outcome: str, timed: Timed) -> None:
    error = timed.answer if isinstance(timed.answer, ChannelError) else None
    attempt = claim.attempt
    attempt.outcome = outcome
    attempt.finished_at = timezone.now()
    attempt.duration_ms = int(timed.seconds * 1000)
    attempt.error_code = error.code if error else ""
    attempt.error_text = error.reason if error else ""
    attempt.save(
        update_fields=["outcome", "finished_at", "duration_ms", "error_code", "error_text"]
    )
    metrics.attempt_ended(claim.delivery.channel, outcome, attempt.error_code)


@transaction.atomic
def _record_sent(sent: list[_Claim], seconds: dict[int, float]) -> list[DeliveryOutcome]:
    now = timezone.now()
    attempts, deliveries = [], []
    for claim in sent:
        attempt = claim.attempt
        attempt.outcome = AttemptOutcome.SENT
        attempt.finished_at = now
        attempt.duration_ms = int(seconds[claim.delivery.pk] * 1000)
        attempts.append(attempt)
        delivery = claim.delivery
        delivery.status = DeliveryStatus.SENT
        delivery.sent_at = now
        delivery.lease_until = None
        delivery.error_code = delivery.error_text = ""
        delivery.updated_at = now
        deliveries.append(delivery)
    update_rows(DeliveryAttempt, attempts, ["outcome", "finished_at", "duration_ms"])
    update_rows(
        Delivery,
        deliveries,
        ["status", "sent_at", "provider_message_id", "parts_sent", "lease_until", "error_code",
         "error_text", "updated_at"],
    )  # fmt: skip
    metrics.deliveries_sent(deliveries)
    for delivery in deliveries:
        logger.info("delivery %s sent on %s (attempt %d)", delivery.pk, delivery.channel,
                    delivery.attempts)  # fmt: skip
    return [DeliveryOutcome(DeliveryStatus.SENT, d.channel, delivery_id=d.pk) for d in deliveries]


@transaction.atomic
def _record_failure(claim: _Claim, timed: Timed) -> DeliveryOutcome:
    error = timed.answer
    delivery = claim.delivery
    now = timezone.now()
    delivery.error_code = error.code
    delivery.error_text = error.reason
    outcome = partial(DeliveryOutcome, channel=delivery.channel, delivery_id=delivery.pk)
    if isinstance(error, TransientError):
        _close_attempt(claim, AttemptOutcome.TRANSIENT, timed)
        delay = retry_delay(delivery.attempts, error.retry_after)
        retry_at = now + timedelta(seconds=delay)
        if delivery.attempts_used >= settings.DELIVERY_MAX_ATTEMPTS:
            _finish(delivery, DeliveryStatus.FAILED, error.code, error.reason, now)
            return outcome(DeliveryStatus.FAILED)
        if retry_at > delivery.expires_at:
            _finish(delivery, DeliveryStatus.EXPIRED, error.code, error.reason, now)
            return outcome(DeliveryStatus.EXPIRED)
        delivery.status = DeliveryStatus.QUEUED
        delivery.next_attempt_at = retry_at
        delivery.held_at = now  # waits in the database for its backoff
        delivery.lease_until = None
        delivery.save(
            update_fields=["status", "next_attempt_at", "held_at", "lease_until", "error_code",
                           "error_text", "updated_at"]
        )  # fmt: skip
        logger.info("delivery %s: %s, retry in %.1fs", delivery.pk, error.code, delay)
        return outcome(DeliveryStatus.QUEUED, retry_in=delay)
    if isinstance(error, RecipientBlocked):
        _close_attempt(claim, AttemptOutcome.BLOCKED, timed)
        _block_contact(delivery, error, now)
        _finish(delivery, DeliveryStatus.FAILED, "recipient_blocked", error.reason, now)
        return outcome(DeliveryStatus.FAILED)
    _close_attempt(claim, AttemptOutcome.PERMANENT, timed)
    _finish(delivery, DeliveryStatus.FAILED, error.code, error.reason, now)
    return outcome(DeliveryStatus.FAILED)


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
