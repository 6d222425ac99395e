"""Patient commands, the same on every messenger: "/schedule daily 08:00 Take pills" on
Telegram, "schedule daily 08:00 Take pills" on WhatsApp and SMS.

handle_text is the one way in: it finds the patient by the sender's contact, notes the
interaction, runs the command through the scheduling services and returns the reply in
the patient's language (None: say nothing). Unknown senders learn nothing about any
patient: Telegram chats get a short explanation, WhatsApp and SMS senders no answer.
STOP (and its Twilio siblings) is honoured from any contact, for every patient the
address belongs to; START and every other command need a verified contact, and act for
the patient whose contact there was verified last (patients.contacts).
"""

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from outreach.follow_ups import note_patient_wrote, set_follow_ups, state_for
from patients.audit import record_action
from patients.contacts import acting_contact, contacts_at
from patients.inbox_links import inbox_link_issue
from patients.languages import moment_text
from patients.linking import LinkOutcome, link_chat
from patients.models import Channel, Contact, Patient
from patients.texts import say
from scheduling.creation import MessageRequest, message_create
from scheduling.models import MessageStatus, ScheduledMessage
from scheduling.patient_limits import (
    PatientReminderLimit,
    check_patient_may_add_reminder,
    check_patient_reminder_interval,
)
from scheduling.phrases import ParsedSchedule, PhraseError, parse_schedule
from scheduling.services import message_cancel, message_pause, message_resume

logger = logging.getLogger(__name__)

# Twilio's standard opt-out and opt-in keywords, honoured as whole messages on every
# channel ("cancel 12" is a command, "cancel" alone opts out, as Twilio reads it).
OPT_OUT_WORDS = frozenset(
    {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "optout", "revoke"}
)
OPT_IN_WORDS = frozenset({"start", "unstop", "yes"})
HELP_WORDS = frozenset({"help", "info"})
# Paused by /stop: only these are resumed by /start, not those the care team paused.
OPT_OUT_REASON = "paused: the patient opted out of all messages"
KNOWN_COMMANDS = frozenset(
    {"schedule", "scheduled", "list", "cancel_schedule", "start", "followups", "inbox",
     *OPT_OUT_WORDS, *OPT_IN_WORDS, *HELP_WORDS}
)  # fmt: skip
MAX_PHRASE_WORDS = 16  # the longest phrase the parser reads has about 12 words
MAX_TEXT_LENGTH = 4096
LIST_LIMIT = 20
LIST_TEXT_LENGTH = 60


@dataclass(frozen=True)
class Command:
    name: str  # lower case, without "/" or "@botname"; "" for text that is no command
    args: str  # the rest, as typed


@dataclass(frozen=True)
class Surface:
    """How commands are typed on the channel a message came in on."""

    channel: str

    @property
    def words(self) -> dict[str, str]:
        if self.channel == Channel.TELEGRAM:
            return {"cmd": "/", "cancel": "cancel_schedule"}
        return {"cmd": "", "cancel": "cancel"}


def parse_command(text: str, channel: str) -> Command:
    parts = (text or "").strip().split(None, 1)
    first, rest = (parts + ["", ""])[:2]
    if channel == Channel.TELEGRAM and not first.startswith("/"):
        return Command("", (text or "").strip())
    name = first.lstrip("/").split("@", 1)[0].lower()
    return Command(name, rest.strip())


def handle_text(
    *, channel: str, address: str, text: str, language_hint: str = "",
    now: datetime | None = None,
) -> str | None:  # fmt: skip
    now = now or timezone.now()
    surface = Surface(channel)
    command = parse_command(storable_text(text), channel)
    if channel == Channel.TELEGRAM and command.name == "start" and command.args:
        return _link(command.args, address, surface, language_hint, now)
    contacts = contacts_at(channel, address)
    contact = acting_contact(contacts)
    if contact is not None:
        Patient.objects.filter(pk=contact.patient_id).update(last_interaction_at=now)
        note_patient_wrote(contact.patient_id, now)
        # Only names we know: the first word of free text is what the patient wrote.
        known = command.name if command.name in KNOWN_COMMANDS else "other"
        logger.info("patient %s: command %s on %s", contact.patient_id, known, channel)
    if contacts and _is_opt_out(command, channel):
        # Whoever holds the address may stop what is sent to it, verified or not, for
        # every patient it belongs to.
        replies = [stop(c.patient, surface, now) for c in contacts]
        return replies[contacts.index(contact)] if contact is not None else replies[0]
    if contact is None:
        if contacts:
            unverified = [c.pk for c in contacts]
            logger.info("contacts %s are not verified: only stop is honoured", unverified)
        return say("unknown_chat", language_hint) if channel == Channel.TELEGRAM else None
    patient = contact.patient
    if _is_opt_in(command, channel):
        # Opting back in takes a verified contact: a stranger's number must not restart
        # a patient's messages. Every patient verified at this address is resumed.
        replies = {c.pk: start(c.patient, c, surface) for c in contacts if c.verified_at}
        return replies[contact.pk]
    return run_command(patient, command, surface, now)


def storable_text(text: str) -> str:
    """Text PostgreSQL can store: no NUL characters, no lone surrogates."""
    return (text or "").replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def handle_other(*, channel: str, address: str, language_hint: str = "") -> str | None:
    """A message without text (a photo, a voice message)."""
    contact = acting_contact(contacts_at(channel, address))
    if contact is None:
        return say("unknown_chat", language_hint) if channel == Channel.TELEGRAM else None
    Patient.objects.filter(pk=contact.patient_id).update(last_interaction_at=timezone.now())
    note_patient_wrote(contact.patient_id)
    return say("only_text", contact.patient.language, **Surface(channel).words)


def _is_opt_out(command: Command, channel: str) -> bool:
    if channel == Channel.TELEGRAM:
        # "stop" typed without the slash is meant the same way.
        return command.name == "stop" or (not command.name and command.args.lower() == "stop")
    return command.name in OPT_OUT_WORDS and not command.args


def _is_opt_in(command: Command, channel: str) -> bool:
    if channel == Channel.TELEGRAM:
        return command.name == "start"
    return command.name in OPT_IN_WORDS and not command.args


def run_command(patient: Patient, command: Command, surface: Surface, now: datetime) -> str:
    name, language = command.name, patient.language
    if name in HELP_WORDS:
        return say("help", language, **surface.words)
    if name == "schedule":
        return schedule(patient, command.args, surface, now)
    if name in ("scheduled", "list"):
        return scheduled(patient, surface)
    if name in ("cancel_schedule", "cancel"):
        return cancel(patient, command.args, surface)
    if name == "followups":
        return followups(patient, command.args, surface)
    if name == "inbox":
        return inbox(patient, surface)
    return say("not_understood", language, **surface.words)


def followups(patient: Patient, args: str, surface: Surface) -> str:
    """/followups on|off|status: follow-ups alone; /stop still stops everything."""
    choice = args.strip().lower()
    if choice in ("on", "off"):
        set_follow_ups(patient, enabled=choice == "on")
        record_action(patient, f"follow_ups_{choice}", channel=surface.channel)
    elif choice != "status":
        return say("followups_usage", patient.language, **surface.words)
    enabled = state_for(patient).enabled
    return say("followups_on" if enabled else "followups_off", patient.language, **surface.words)


def inbox(patient: Patient, surface: Surface) -> str:
    """/inbox: a fresh link to the web inbox; the patient's older link stops working."""
    language, words = patient.language, surface.words
    if not settings.PUBLIC_BASE_URL or patient.deactivated_at is not None:
        return say("inbox_ask_care_team", language, **words)
    url = settings.PUBLIC_BASE_URL + inbox_link_issue(patient=patient).path
    return say("inbox_link", language, url=url, days=settings.INBOX_LINK_DAYS, **words)


# -- /schedule ------------------------------------------------------------------------


def split_phrase(args: str, *, zone_name: str, now: datetime) -> tuple[ParsedSchedule, str, str]:
    """(parsed schedule, phrase, text) for "<phrase> <text>": the longest run of leading
    words that parses is the phrase, the rest is the text. Raises PhraseError when no
    leading run parses."""
    spans = [match.span() for match in re.finditer(r"\S+", args)][:MAX_PHRASE_WORDS]
    if not spans:
        parse_schedule(args, zone_name=zone_name, now=now)  # raises the parser's own error
    errors: dict[int, PhraseError] = {}
    for size in range(len(spans), 0, -1):
        phrase = args[: spans[size - 1][1]]
        try:
            parsed = parse_schedule(phrase, zone_name=zone_name, now=now)
        except PhraseError as error:
            errors[size] = error
            continue
        return parsed, " ".join(phrase.split()), args[spans[size - 1][1] :].strip()
    raise _most_telling(errors, args, spans)


def _most_telling(
    errors: dict[int, PhraseError], args: str, spans: list[tuple[int, int]]
) -> PhraseError:
    """A phrase usually ends in a number (08:00, 2h, 3 days, 10 times): the error for the
    longest run ending in one is about the phrase, not about the reminder's first word."""
    for size in sorted(errors, reverse=True):
        start, end = spans[size - 1]
        if any(character.isdigit() for character in args[start:end]):
            return errors[size]
    return errors[max(errors)]


def schedule(patient: Patient, args: str, surface: Surface, now: datetime) -> str:
    language, words = patient.language, surface.words
    if patient.opted_out_at is not None:
        return say("opted_out_first", language, **words)
    if not args.strip():
        return say("schedule_usage", language, **words)
    try:
        parsed, phrase, text = split_phrase(args, zone_name=patient.timezone, now=now)
    except PhraseError as error:
        return say("schedule_bad_phrase", language, error=str(error), **words)
    if not text:
        return say("schedule_no_text", language, phrase=phrase, **words)
    try:
        message = message_patient_create(patient, text[:MAX_TEXT_LENGTH], phrase,
                                         parsed.description, surface.channel)  # fmt: skip
    except PatientReminderLimit as limit:
        logger.info("patient %s: reminder refused, %s", patient.pk, limit.text)
        return say(limit.text, language, limit=limit.limit, **words)
    except ValidationError as error:
        return say("schedule_refused", language, error=" ".join(error.messages), **words)
    when = _local(message.next_run_at or message.starts_at, message)
    return say("scheduled_one", language, id=message.pk, description=parsed.description,
               when=when, **words)  # fmt: skip


@transaction.atomic
def message_patient_create(
    patient: Patient, text: str, phrase: str, description: str, channel: str
) -> ScheduledMessage:
    """A reminder the patient set up: their organization's, marked as theirs, within the
    limits on patients' own reminders (scheduling.patient_limits)."""
    # One at a time per patient, so two at once cannot both pass the count.
    Patient.objects.select_for_update().filter(pk=patient.pk).first()
    check_patient_may_add_reminder(patient)
    message = message_create(
        MessageRequest(
            patient=patient, content=text, schedule=phrase,
            metadata={"source": channel, "schedule": description},
        )
    )  # fmt: skip
    check_patient_reminder_interval(message)  # raising rolls the message back
    message.created_by_patient = True
    message.save(update_fields=["created_by_patient"])
    logger.info("patient %s created message %s on %s", patient.pk, message.pk, channel)
    return message


def _local(moment: datetime, message: ScheduledMessage) -> str:
    return moment_text(moment, ZoneInfo(message.zone_name), message.patient.language)


# -- /scheduled, /cancel_schedule -----------------------------------------------------


def scheduled(patient: Patient, surface: Surface) -> str:
    language = patient.language
    active = ScheduledMessage.objects.filter(patient=patient, status=MessageStatus.ACTIVE)
    rows = list(active.select_related("patient").order_by("next_run_at", "id")[: LIST_LIMIT + 1])
    if not rows:
        return say("list_empty", language, **surface.words)
    lines = [say("list_header", language)]
    for message in rows[:LIST_LIMIT]:
        description = message.metadata.get("schedule") if isinstance(message.metadata, dict) else ""
        if not description:
            description = say("repeating" if message.recurrence else "once", language)
        lines.append(say("list_row", language, id=message.pk, description=description,
                         when=_local(message.next_run_at, message),
                         text=_clip(message.content)))  # fmt: skip
    if len(rows) > LIST_LIMIT:
        lines.append(say("list_more", language, count=active.count() - LIST_LIMIT))
    return "\n".join(lines)


def _clip(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= LIST_TEXT_LENGTH else flat[: LIST_TEXT_LENGTH - 3] + "..."


def cancel(patient: Patient, args: str, surface: Surface) -> str:
    language, words = patient.language, surface.words
    raw = args.strip().removeprefix("#")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        return say("cancel_usage", language, **words)
    message_id = int(raw)
    # Another patient's message is "not found" too: its existence stays hidden.
    message = ScheduledMessage.objects.filter(
        pk=message_id, patient=patient, status__in=[MessageStatus.ACTIVE, MessageStatus.PAUSED]
    ).first()
    if message is None:
        return say("cancel_not_found", language, id=message_id, **words)
    message_cancel(message, reason=f"cancelled by the patient on {surface.channel}")
    logger.info("patient %s cancelled message %s", patient.pk, message.pk)
    return say("cancel_done", language, id=message_id, **words)


# -- /stop, /start --------------------------------------------------------------------


def stop(patient: Patient, surface: Surface, now: datetime) -> str:
    if not patient_opt_out(patient, channel=surface.channel, now=now):
        return say("already_stopped", patient.language, **surface.words)
    return say("stopped", patient.language, **surface.words)


def start(patient: Patient, contact: Contact, surface: Surface) -> str:
    # Writing to us shows the patient no longer blocks this channel.
    Contact.objects.filter(pk=contact.pk, blocked_at__isnull=False).update(
        blocked_at=None, blocked_reason=""
    )
    resumed = patient_opt_in(patient, channel=surface.channel)
    if resumed is None:
        return say("already_linked", patient.language, **surface.words)
    return say("resumed", patient.language, count=resumed, **surface.words)


@transaction.atomic
def patient_opt_out(patient: Patient, *, channel: str, now: datetime) -> bool:
    """Records the opt-out with its time and pauses the patient's active messages; False
    when the patient had opted out already."""
    changed = Patient.objects.filter(pk=patient.pk, opted_out_at__isnull=True).update(
        opted_out_at=now
    )
    if not changed:
        return False
    patient.opted_out_at = now
    active = ScheduledMessage.objects.filter(patient=patient, status=MessageStatus.ACTIVE)
    paused = sum(message_pause(message, reason=OPT_OUT_REASON) for message in active)
    record_action(patient, "opted_out", channel=channel, paused=paused)
    logger.info("patient %s opted out on %s: %d messages paused", patient.pk, channel, paused)
    return True


@transaction.atomic
def patient_opt_in(patient: Patient, *, channel: str) -> int | None:
    """Clears the opt-out and resumes what it paused; None when there was none."""
    changed = Patient.objects.filter(pk=patient.pk, opted_out_at__isnull=False).update(
        opted_out_at=None
    )
    if not changed:
        return None
    patient.opted_out_at = None
    paused = ScheduledMessage.objects.filter(
        patient=patient, status=MessageStatus.PAUSED, status_reason=OPT_OUT_REASON
    )
    resumed = sum(message_resume(message) for message in paused)
    record_action(patient, "opted_in", channel=channel, resumed=resumed)
    logger.info("patient %s opted in on %s: %d messages resumed", patient.pk, channel, resumed)
    return resumed


# -- linking ----------------------------------------------------------------------------


def _link(token: str, chat_id: str, surface: Surface, language_hint: str, now: datetime) -> str:
    result = link_chat(token=token.strip()[:128], chat_id=chat_id)
    patient = result.patient
    language = patient.language if patient is not None else language_hint
    if result.outcome != LinkOutcome.LINKED or patient is None:
        return say(result.outcome.value, language, **surface.words)
    Patient.objects.filter(pk=patient.pk).update(last_interaction_at=now)
    resumed = patient_opt_in(patient, channel=surface.channel)
    if resumed is not None:
        return say("resumed", language, count=resumed, **surface.words)
    return say("linked", language, **surface.words)
