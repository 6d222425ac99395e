"""What the bot says, through Django's translation catalogs (locale/, README: Languages).

Each text is marked here once, in English; `say` renders it in the patient's language
(patients.languages.patient_language: a language of settings.LANGUAGES, else English)
inside translation.override, so a worker's own language never leaks into a reply.
Texts are plain (no HTML) and name no diagnosis or medication of their own: a reply may
be read on a lock screen. `{cmd}` is "/" on Telegram and "" on WhatsApp and SMS, where
commands are typed without the slash; `{cancel}` is the cancel command's name there.
Command words (/schedule, daily, on, off) stay as they are: the bot reads them in every
language.
"""

from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from patients.languages import patient_language

TEXTS: dict[str, Promise] = {
    "unknown_chat": _(
        "Hello! This bot sends reminders from your care team. To connect, open the "
        "link or scan the QR code your care team gave you."
    ),
    "linked": _(
        "You are connected. Your care team's reminders will arrive here. Send "
        "{cmd}help to see what you can do."
    ),
    "already_linked": _("You are already connected. Send {cmd}help to see what you can do."),
    "link_expired": _("This link has expired. Please ask your care team for a new one."),
    "link_used": _(
        "This link has already been used. Please ask your care team for a new one. "
        "If you did not use it yourself, please tell them."
    ),
    "link_invalid": _("This link is not valid. Please ask your care team for a new one."),
    "link_other_patient": _(
        "This chat is already connected to another person. Please ask your care team for help."
    ),
    "help": _(
        "What you can send:\n"
        "{cmd}schedule WHEN TEXT - a reminder of your own, e.g.\n"
        "  {cmd}schedule daily 08:00 Take your medication\n"
        "  {cmd}schedule tomorrow 15:00 Call the pharmacy\n"
        "  {cmd}schedule every 2h Drink water\n"
        "{cmd}scheduled - your reminders and their numbers\n"
        "{cmd}{cancel} NUMBER - stop one of your reminders\n"
        "{cmd}followups off - no follow-ups when you have been quiet ({cmd}followups "
        "on, {cmd}followups status)\n"
        "{cmd}inbox - a link to read your messages on the web\n"
        "{cmd}stop - no more messages at all\n"
        "{cmd}start - messages again after {cmd}stop\n"
        "Messages you write here are not read by your care team. In an emergency, "
        "call your local emergency number."
    ),
    "followups_on": _(
        "Follow-ups are on: if you have not written for a while, I will check on "
        "you. Send {cmd}followups off to stop them."
    ),
    "followups_off": _(
        "Follow-ups are off. Your reminders and check-ins go on as before. Send "
        "{cmd}followups on to have them again."
    ),
    "followups_usage": _("Send {cmd}followups on, {cmd}followups off or {cmd}followups status."),
    "not_understood": _(
        "Sorry, I did not understand that. Messages here are not read by your care "
        "team; please contact them directly. Send {cmd}help to see what you can do."
    ),
    "schedule_usage": _(
        "Please write when, then the reminder text, e.g. {cmd}schedule daily 08:00 "
        "Take your medication"
    ),
    "schedule_no_text": _(
        "Please add the reminder text after the time, e.g. {cmd}schedule {phrase} "
        "Take your medication"
    ),
    "schedule_bad_phrase": _(
        "{error}\nFor example: {cmd}schedule daily 08:00 Take your medication"
    ),
    "schedule_refused": _("This reminder could not be saved: {error}"),
    "scheduled_one": _("Reminder #{id} saved ({description}). The first one comes {when}."),
    "schedule_too_many": _(
        "You have {limit} reminders already, the most you can set up yourself. Stop "
        "one first with {cmd}{cancel} NUMBER (send {cmd}scheduled to see the "
        "numbers)."
    ),
    "schedule_too_often": _(
        "A reminder you set up yourself can come at most every {limit} minutes. "
        "Please choose a longer interval, e.g. {cmd}schedule daily 08:00 Take your "
        "medication"
    ),
    "inbox_link": _(
        "Your messages on the web: {url}\n"
        "The link works for {days} days; a newer one replaces it. Keep it to "
        "yourself: whoever has it can read your messages."
    ),
    "inbox_ask_care_team": _("Please ask your care team for a link to your messages on the web."),
    "opted_out_first": _(
        "You have stopped all messages. Send {cmd}start to receive them again first."
    ),
    "list_header": _("Your reminders:"),
    "list_row": _("#{id} {description}, next {when}: {text}"),
    "list_empty": _("You have no active reminders."),
    "list_more": _("... and {count} more."),
    "repeating": pgettext_lazy("kind of reminder", "repeating"),
    "once": pgettext_lazy("kind of reminder", "once"),
    "cancel_usage": _(
        "Please give the reminder's number, e.g. {cmd}{cancel} 12. Send "
        "{cmd}scheduled to see the numbers."
    ),
    "cancel_done": _("Reminder #{id} is cancelled."),
    "cancel_not_found": _(
        "You have no active reminder #{id}. Send {cmd}scheduled to see your reminders."
    ),
    "stopped": _(
        "You will receive no more messages from us. Your care team can see that you "
        "stopped them. Send {cmd}start at any time to receive them again."
    ),
    "already_stopped": _(
        "You have already stopped all messages. Send {cmd}start to receive them again."
    ),
    "resumed": _(
        "Welcome back. Your messages are on again ({count} reminders resumed). Send "
        "{cmd}help to see what you can do."
    ),
    "only_text": _("I can only read text. Send {cmd}help to see what you can do."),
    "button_taken": pgettext_lazy("medication reminder button", "Taken"),
    "button_snooze": pgettext_lazy("medication reminder button", "Snooze {minutes} min"),
    "button_skip": pgettext_lazy("medication reminder button", "Skip"),
    "ack_taken": _("Taken at {time}."),
    "ack_snoozed": _("Snoozed: I will remind you again at {time}."),
    "ack_skipped": _("Skipped at {time}."),
    "ack_already": _("Your answer was already recorded: {choice}."),
    "ack_invalid": _("This button is no longer valid."),
    "choice_taken": pgettext_lazy("answer to a reminder", "taken"),
    "choice_snoozed": pgettext_lazy("answer to a reminder", "snoozed"),
    "choice_skipped": pgettext_lazy("answer to a reminder", "skipped"),
    "choice_missed": pgettext_lazy("answer to a reminder", "missed"),
}


def say(key: str, language: str | None, **params: object) -> str:
    params.setdefault("cmd", "/")
    params.setdefault("cancel", "cancel_schedule")
    with translation.override(patient_language(language)):
        return str(TEXTS[key]).format(**params)
