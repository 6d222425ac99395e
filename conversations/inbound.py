"""Messages from patients: Telegram updates, WhatsApp messages and SMS.

Telegram and WhatsApp: the view checks the provider's signature, stores each update
(InboundUpdate, unique on the provider's id) and answers 200 at once; after commit a
Celery task processes it. A re-delivered update finds its row and is not queued again;
the task claims the row with a conditional UPDATE, so two copies of the task process it
once. An update whose task was lost (Redis down) or failed is queued again by the sweep,
up to INBOUND_MAX_ATTEMPTS times. Once processed, the payload (what the patient wrote) is
emptied (an update never processed loses it after INBOUND_KEEP_DAYS); the row, the
provider's id and a few timestamps, remains to recognise a re-delivery or a replayed
webhook for INBOUND_REPLAY_KEEP_DAYS. A WhatsApp message sent longer ago than that is
ignored by the timestamp Meta signs with it, so a replay cannot outlive its row.

SMS: Twilio waits for our answer (TwiML) to reply, so an SMS is handled in the request;
its MessageSid is stored the same way, so a repeated webhook is answered once.

All three run the same commands (conversations.bot.commands.handle_text).
"""

import hashlib
import hmac
import html
import logging
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from kombu.exceptions import OperationalError

from channels_app.base import ChannelError, OutboundMessage
from channels_app.registry import adapter_for
from conversations import metrics
from conversations.bot.commands import (
    OPT_IN_WORDS,
    OPT_OUT_WORDS,
    handle_other,
    handle_text,
    storable_text,
)
from patients.models import Channel, InboundUpdate
from scheduling.queueing import publish_task

logger = logging.getLogger(__name__)

# A claim outlives the longest processing (conversations.bot.application), so a second
# copy of the task never starts on an update still being processed.
CLAIM_SECONDS = 180
SWEEP_BATCH = 500
# The processing task's name: the name it had in channels_app, kept so that updates queued
# by an older release still find it (conversations.tasks registers it).
PROCESS_TASK = "channels_app.process_inbound_update"
SMS_REPLY_LIMIT = 1600
# Twilio answers these itself (Advanced Opt-Out); a reply of ours to STOP would be refused.
TWILIO_KEYWORDS = OPT_OUT_WORDS | OPT_IN_WORDS


# -- Storing and processing -------------------------------------------------------------


def inbound_receive(*, channel: str, external_id: str, payload: dict) -> bool:
    """Stores an update and queues its processing after commit; False for a re-delivery."""
    with transaction.atomic():
        row, created = InboundUpdate.objects.get_or_create(
            channel=channel, external_id=external_id[:128], defaults={"payload": storable(payload)}
        )
        if created:
            transaction.on_commit(partial(enqueue_inbound, row.pk))
    if not created:
        logger.info("inbound %s update %s was delivered again; ignored", channel, row.pk)
    return created


def storable(value: object) -> object:
    """The payload with every string made storable (PostgreSQL's jsonb refuses NUL and
    lone surrogates); otherwise the provider would get a 500 and send it forever."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, list):
        return [storable(item) for item in value]
    if isinstance(value, dict):
        return {storable_text(str(key)): storable(item) for key, item in value.items()}
    return value


def enqueue_inbound(update_pk: int) -> bool:
    try:
        publish_task(PROCESS_TASK, (update_pk,), queue=settings.INBOUND_QUEUE)
    except OperationalError:
        logger.warning("broker unreachable; inbound update %s left for the sweep", update_pk)
        return False
    return True


def inbound_process(update_pk: int) -> str:
    """Claims and processes one stored update: "processed", "failed" or "skipped"."""
    now = timezone.now()
    claimed = (
        InboundUpdate.objects.filter(pk=update_pk, processed_at__isnull=True,
                                     attempts__lt=settings.INBOUND_MAX_ATTEMPTS)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(claimed_until=now + timedelta(seconds=CLAIM_SECONDS), attempts=F("attempts") + 1)
    )  # fmt: skip
    if not claimed:
        channel = InboundUpdate.objects.filter(pk=update_pk).values_list("channel", flat=True)
        metrics.inbound_updates.labels(channel.first() or "unknown", "skipped").inc()
        return "skipped"  # processed, being processed, or given up on
    row = InboundUpdate.objects.get(pk=update_pk)
    try:
        PROCESSORS[row.channel](row.payload)
    except Exception as error:
        # Any failure leaves the update for the sweep; attempts are capped above.
        logger.warning("inbound update %s failed (attempt %d): %s", row.pk, row.attempts,
                       type(error).__name__, exc_info=True)  # fmt: skip
        InboundUpdate.objects.filter(pk=row.pk).update(
            claimed_until=None, error=type(error).__name__[:255]
        )
        metrics.inbound_updates.labels(row.channel, "failed").inc()
        return "failed"
    InboundUpdate.objects.filter(pk=row.pk).update(
        processed_at=timezone.now(), claimed_until=None, payload={}, error=""
    )
    metrics.inbound_updates.labels(row.channel, "processed").inc()
    return "processed"


GIVEN_UP = "not processed within INBOUND_KEEP_DAYS: what the patient wrote was removed"


def inbound_sweep(*, now=None) -> dict[str, int]:
    """Queues again updates not processed in time; empties the payload of those never
    processed after INBOUND_KEEP_DAYS; deletes rows older than INBOUND_REPLAY_KEEP_DAYS."""
    now = now or timezone.now()
    # Given up on: what a patient wrote is kept no longer; the id stays, against replays.
    old = now - timedelta(days=settings.INBOUND_KEEP_DAYS)
    # (Found by the error it is marked with: the payload is encrypted, SQL cannot see it.)
    emptied = (
        InboundUpdate.objects.filter(processed_at__isnull=True, received_at__lt=old)
        .exclude(error=GIVEN_UP)
        .update(
            payload={},
            attempts=settings.INBOUND_MAX_ATTEMPTS,
            claimed_until=None,
            error=GIVEN_UP,
        )
    )
    stale = now - timedelta(seconds=settings.INBOUND_RETRY_AFTER_SECONDS)
    pending = list(
        InboundUpdate.objects.filter(processed_at__isnull=True, received_at__lte=stale,
                                     attempts__lt=settings.INBOUND_MAX_ATTEMPTS)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .order_by("received_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )  # fmt: skip
    requeued = sum(enqueue_inbound(pk) for pk in pending)
    forgotten = now - timedelta(days=settings.INBOUND_REPLAY_KEEP_DAYS)
    deleted, _ = InboundUpdate.objects.filter(received_at__lt=forgotten).delete()
    if requeued or emptied or deleted:
        logger.info(
            "inbound sweep: %d queued again, %d emptied, %d deleted", requeued, emptied, deleted
        )
    return {"requeued": requeued, "emptied": emptied, "deleted": deleted}


def _process_telegram(payload: dict) -> None:
    from conversations.bot.application import process_update

    process_update(payload)


def _process_whatsapp(payload: dict) -> None:
    address = "+" + str(payload.get("from", ""))
    if payload.get("type") in ("text", "button"):
        reply = handle_text(channel=Channel.WHATSAPP, address=address,
                            text=str(payload.get("text") or ""))  # fmt: skip
    else:
        reply = handle_other(channel=Channel.WHATSAPP, address=address)
    if reply:
        send_reply(Channel.WHATSAPP, address, reply)


PROCESSORS = {Channel.TELEGRAM: _process_telegram, Channel.WHATSAPP: _process_whatsapp}


def send_reply(channel: str, address: str, text: str) -> bool:
    """An answer to what the patient just wrote, through the channel's adapter. Not
    retried: a second try would mean running the command a second time."""
    # A reply, not a delivery: there is no Delivery row for the adapter to name.
    outbound = OutboundMessage(delivery_id=0, patient_id=0, channel=channel, address=address,
                               text=text, format="text")  # fmt: skip
    try:
        adapter_for(channel).send(outbound)
    except ChannelError as error:
        logger.warning("reply on %s not sent: %s", channel, error.code)
        return False
    return True


# -- Telegram ---------------------------------------------------------------------------


def telegram_secret_valid(given: str) -> bool:
    expected = settings.TELEGRAM_WEBHOOK_SECRET
    if not expected:
        return False  # not configured: refuse everything rather than accept anything
    return hmac.compare_digest(given.encode(), expected.encode())


def telegram_update_id(payload: object) -> int | None:
    update_id = payload.get("update_id") if isinstance(payload, dict) else None
    if isinstance(update_id, int) and not isinstance(update_id, bool) and update_id >= 0:
        return update_id
    return None


# -- WhatsApp ---------------------------------------------------------------------------


def whatsapp_signature_valid(body: bytes, header: str) -> bool:
    """Meta's X-Hub-Signature-256: "sha256=" and the HMAC-SHA256 of the raw body, keyed
    with the app secret."""
    secret = settings.WHATSAPP_APP_SECRET
    if not secret or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.removeprefix("sha256=").lower().encode())


def whatsapp_verify_token_valid(given: str) -> bool:
    expected = settings.WHATSAPP_VERIFY_TOKEN
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def whatsapp_messages(payload: object) -> list[tuple[str, dict]]:
    """(message id, what we keep of it) for each patient message in a webhook body;
    delivery statuses, anything unexpected and messages older than the replay window are
    left out."""
    found = []
    for value in _whatsapp_values(payload):
        for message in _dicts(value.get("messages")):
            message_id, sender, kind = message.get("id"), message.get("from"), message.get("type")
            if not isinstance(message_id, str) or not isinstance(sender, str):
                continue
            if not sender.isascii() or not sender.isdigit():
                continue
            if _sent_before_the_replay_window(message.get("timestamp")):
                logger.warning("whatsapp message older than the replay window; ignored")
                continue
            text = ""
            if kind == "text" and isinstance(message.get("text"), dict):
                text = message["text"].get("body")
            elif kind == "button" and isinstance(message.get("button"), dict):
                text = message["button"].get("text")
            found.append((message_id, {"from": sender, "type": str(kind),
                                       "text": text if isinstance(text, str) else ""}))  # fmt: skip
    return found


def _sent_before_the_replay_window(timestamp: object) -> bool:
    """Meta signs each message with its Unix time; a body that old is a replay (Meta
    retries for 7 days at most), and its row may be gone already."""
    if not isinstance(timestamp, str) or not timestamp.isascii() or not timestamp.isdigit():
        return False
    window = timedelta(days=settings.INBOUND_REPLAY_KEEP_DAYS).total_seconds()
    return int(timestamp) < timezone.now().timestamp() - window


def _whatsapp_values(payload: object) -> list[dict]:
    if not isinstance(payload, dict):
        return []
    values = []
    for entry in _dicts(payload.get("entry")):
        for change in _dicts(entry.get("changes")):
            if isinstance(change.get("value"), dict):
                values.append(change["value"])
    return values


def _dicts(items: object) -> list[dict]:
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


# -- SMS (Twilio) ------------------------------------------------------------------------


def sms_receive(*, message_sid: str, sender: str, body: str) -> str | None:
    """Runs the command an SMS holds; the reply to send back, or None for none."""
    with transaction.atomic():
        _, created = InboundUpdate.objects.get_or_create(
            channel=Channel.SMS, external_id=message_sid[:128],
            defaults={"processed_at": timezone.now(), "attempts": 1},
        )  # fmt: skip
        if not created:
            logger.info("twilio message %s was delivered again; ignored", message_sid)
            metrics.inbound_updates.labels(Channel.SMS, "skipped").inc()
            return None
        reply = handle_text(channel=Channel.SMS, address=sender, text=body)
    metrics.inbound_updates.labels(Channel.SMS, "processed").inc()
    if body.strip().lower() in TWILIO_KEYWORDS:
        return None
    return reply[:SMS_REPLY_LIMIT] if reply else None


def twiml(reply: str | None) -> str:
    head = '<?xml version="1.0" encoding="UTF-8"?>'
    if not reply:
        return f"{head}<Response/>"
    return f"{head}<Response><Message>{html.escape(reply, quote=False)}</Message></Response>"
