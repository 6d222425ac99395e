"""Taken / Snooze / Skip on medication reminders.

Each button's callback data names the delivery and the action and carries a signature
over both and the chat the reminder went to: "ack:<delivery id>:<action>:<signature>",
well under Telegram's 64 bytes. A press from another chat, or with edited data, fails the
signature; the chat must also still be the patient's Telegram contact. The first answer
to a delivery counts (one Acknowledgement per delivery), so a double press or a
re-delivered update records nothing twice, and Snooze schedules its repeat once.
"""

import base64
import hmac
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from patients.encryption import address_hash
from patients.languages import time_text
from patients.models import Channel, Patient
from patients.texts import say
from scheduling.models import (
    AckAction,
    Acknowledgement,
    Delivery,
    MessageKind,
    ScheduledMessage,
)
from scheduling.services import message_schedule

logger = logging.getLogger(__name__)

PREFIX = "ack"
ACTION_CODES = {"t": AckAction.TAKEN, "z": AckAction.SNOOZED, "s": AckAction.SKIPPED}
CODES = {action: code for code, action in ACTION_CODES.items()}
_SALT = "companion.bot.acknowledgement"


@dataclass(frozen=True)
class AckReply:
    toast: str  # the short answer to the press
    note: str = ""  # a line added to the reminder; empty: the message stays as it is


def _signature(delivery_id: int, code: str, chat_id: str) -> str:
    digest = salted_hmac(_SALT, f"{delivery_id}:{code}:{chat_id}", algorithm="sha256").digest()
    return base64.urlsafe_b64encode(digest[:12]).decode()  # 96 bits, 16 characters


def callback_data(delivery_id: int, action: str, chat_id: str) -> str:
    code = CODES[action]
    return f"{PREFIX}:{delivery_id}:{code}:{_signature(delivery_id, code, chat_id)}"


def acknowledgement_buttons(
    delivery_id: int, chat_id: str, language: str
) -> tuple[tuple[str, str], ...]:
    """(label, callback data) for a medication reminder sent to this chat."""
    minutes = settings.ACK_SNOOZE_MINUTES
    return (
        (say("button_taken", language), callback_data(delivery_id, AckAction.TAKEN, chat_id)),
        (say("button_snooze", language, minutes=minutes),
         callback_data(delivery_id, AckAction.SNOOZED, chat_id)),
        (say("button_skip", language), callback_data(delivery_id, AckAction.SKIPPED, chat_id)),
    )  # fmt: skip


def wants_buttons(message: ScheduledMessage, channel: str) -> bool:
    return message.kind == MessageKind.MEDICATION and channel == Channel.TELEGRAM


def parse_callback(data: str, chat_id: str) -> tuple[int, str] | None:
    """(delivery id, action) when the data is ours and was signed for this chat."""
    parts = (data or "").split(":")
    if len(parts) != 4 or parts[0] != PREFIX or parts[2] not in ACTION_CODES:
        return None
    _, raw_id, code, signature = parts
    if not raw_id.isascii() or not raw_id.isdigit() or len(raw_id) > 18:
        return None
    delivery_id = int(raw_id)
    if not hmac.compare_digest(signature.encode(), _signature(delivery_id, code, chat_id).encode()):
        return None
    return delivery_id, ACTION_CODES[code]


def acknowledge_press(*, chat_id: str, data: str, now: datetime | None = None) -> AckReply:
    """A button press on Telegram: checks it, records the answer, says what to show."""
    now = now or timezone.now()
    parsed = parse_callback(data, chat_id)
    delivery = None
    if parsed is not None:
        delivery = (
            Delivery.objects.select_related("message", "message__patient")
            .filter(
                pk=parsed[0],
                message__patient__contacts__channel=Channel.TELEGRAM,
                message__patient__contacts__address_hash=address_hash(Channel.TELEGRAM, chat_id),
            )
            .first()
        )
    if parsed is None or delivery is None:
        logger.warning("refused an acknowledgement button press (bad signature or chat)")
        return AckReply(say("ack_invalid", None))
    patient = delivery.message.patient
    Patient.objects.filter(pk=patient.pk).update(last_interaction_at=now)
    return acknowledge(delivery=delivery, action=parsed[1], channel=Channel.TELEGRAM, now=now)


def acknowledge(*, delivery: Delivery, action: str, channel: str, now: datetime) -> AckReply:
    """Records the patient's answer to a delivery; Snooze also schedules the repeat."""
    patient = delivery.message.patient
    language = patient.language
    try:
        with transaction.atomic():
            ack = Acknowledgement.objects.create(
                delivery=delivery, action=action, at=now, channel=channel
            )
            if action == AckAction.SNOOZED:
                ack.snooze_message = _schedule_repeat(delivery, now)
                ack.save(update_fields=["snooze_message"])
    except IntegrityError:
        earlier = Acknowledgement.objects.get(delivery=delivery)
        choice = say(f"choice_{earlier.action}", language)
        return AckReply(say("ack_already", language, choice=choice))
    except ValidationError:
        # The repeat could not be scheduled (e.g. the patient opted out meanwhile).
        logger.warning("delivery %s: snooze repeat refused", delivery.pk)
        return AckReply(say("ack_invalid", language))
    logger.info("delivery %s acknowledged: %s", delivery.pk, action)
    local = _local_time(ack, patient)
    note = say(f"ack_{action}", language, time=local)
    return AckReply(toast=note, note=note)


def _local_time(ack: Acknowledgement, patient: Patient) -> str:
    if ack.action == AckAction.SNOOZED and ack.snooze_message is not None:
        moment = ack.snooze_message.next_run_at or ack.snooze_message.starts_at
    else:
        moment = ack.at
    return time_text(moment, patient.zone, patient.language)


def _schedule_repeat(delivery: Delivery, now: datetime) -> ScheduledMessage:
    """The reminder once more, ACK_SNOOZE_MINUTES from now, with buttons of its own."""
    original = delivery.message
    repeat = message_schedule(
        patient=original.patient,
        content=original.content,
        format=original.format,
        starts_at=now + timedelta(minutes=settings.ACK_SNOOZE_MINUTES),
        channel=original.channel if original.channel_fixed else None,
        priority=original.priority,
        zone_name=original.timezone,
        metadata={"snooze_of_delivery": delivery.pk},
    )
    repeat.kind = original.kind
    repeat.ack_timeout_minutes = original.ack_timeout_minutes
    repeat.created_by_patient = original.created_by_patient
    repeat.save(update_fields=["kind", "ack_timeout_minutes", "created_by_patient"])
    return repeat
