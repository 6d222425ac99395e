"""What the bot says, per language: English and German; any other language gets English.

Texts are plain (no HTML) and name no diagnosis or medication of their own: a reply may
be read on a lock screen. `{cmd}` is "/" on Telegram and "" on WhatsApp and SMS, where
commands are typed without the slash.
"""

FALLBACK = "en"

TEXTS: dict[str, dict[str, str]] = {
    "unknown_chat": {
        "en": "Hello! This bot sends reminders from your care team. To connect, open the "
        "link or scan the QR code your care team gave you.",
        "de": "Hallo! Dieser Bot sendet Erinnerungen Ihres Behandlungsteams. Um sich zu "
        "verbinden, öffnen Sie den Link oder scannen Sie den QR-Code von Ihrem "
        "Behandlungsteam.",
    },
    "linked": {
        "en": "You are connected. Your care team's reminders will arrive here. "
        "Send {cmd}help to see what you can do.",
        "de": "Sie sind verbunden. Die Erinnerungen Ihres Behandlungsteams kommen ab jetzt "
        "hier an. Senden Sie {cmd}help, um zu sehen, was Sie tun können.",
    },
    "already_linked": {
        "en": "You are already connected. Send {cmd}help to see what you can do.",
        "de": "Sie sind bereits verbunden. Senden Sie {cmd}help, um zu sehen, was Sie tun können.",
    },
    "link_expired": {
        "en": "This link has expired. Please ask your care team for a new one.",
        "de": "Dieser Link ist abgelaufen. Bitte fragen Sie Ihr Behandlungsteam nach einem neuen.",
    },
    "link_used": {
        "en": "This link has already been used. Please ask your care team for a new one. "
        "If you did not use it yourself, please tell them.",
        "de": "Dieser Link wurde bereits verwendet. Bitte fragen Sie Ihr Behandlungsteam nach "
        "einem neuen. Wenn Sie ihn nicht selbst verwendet haben, sagen Sie es bitte dort.",
    },
    "link_invalid": {
        "en": "This link is not valid. Please ask your care team for a new one.",
        "de": "Dieser Link ist ungültig. Bitte fragen Sie Ihr Behandlungsteam nach einem neuen.",
    },
    "link_other_patient": {
        "en": "This chat is already connected to another person. Please ask your care team "
        "for help.",
        "de": "Dieser Chat ist bereits mit einer anderen Person verbunden. Bitte wenden Sie "
        "sich an Ihr Behandlungsteam.",
    },
    "help": {
        "en": "What you can send:\n"
        "{cmd}schedule WHEN TEXT - a reminder of your own, e.g.\n"
        "  {cmd}schedule daily 08:00 Take your medication\n"
        "  {cmd}schedule tomorrow 15:00 Call the pharmacy\n"
        "  {cmd}schedule every 2h Drink water\n"
        "{cmd}scheduled - your reminders and their numbers\n"
        "{cmd}{cancel} NUMBER - stop one of your reminders\n"
        "{cmd}followups off - no follow-ups when you have been quiet ({cmd}followups on, "
        "{cmd}followups status)\n"
        "{cmd}inbox - a link to read your messages on the web\n"
        "{cmd}stop - no more messages at all\n"
        "{cmd}start - messages again after {cmd}stop\n"
        "Messages you write here are not read by your care team. In an emergency, call "
        "your local emergency number.",
        "de": "Was Sie senden können:\n"
        "{cmd}schedule WANN TEXT - eine eigene Erinnerung, z. B.\n"
        "  {cmd}schedule daily 08:00 Medikament nehmen\n"
        "  {cmd}schedule tomorrow 15:00 Apotheke anrufen\n"
        "  {cmd}schedule every 2h Wasser trinken\n"
        "{cmd}scheduled - Ihre Erinnerungen und ihre Nummern\n"
        "{cmd}{cancel} NUMMER - eine Ihrer Erinnerungen beenden\n"
        "{cmd}followups off - keine Nachfragen, wenn Sie länger nichts geschrieben haben "
        "({cmd}followups on, {cmd}followups status)\n"
        "{cmd}inbox - ein Link, um Ihre Nachrichten im Web zu lesen\n"
        "{cmd}stop - keine Nachrichten mehr\n"
        "{cmd}start - wieder Nachrichten nach {cmd}stop\n"
        "Was Sie hier schreiben, liest Ihr Behandlungsteam nicht. Im Notfall rufen Sie "
        "bitte den Notruf an.",
    },
    "followups_on": {
        "en": "Follow-ups are on: if you have not written for a while, I will check on you. "
        "Send {cmd}followups off to stop them.",
        "de": "Nachfragen sind an: Wenn Sie länger nichts geschrieben haben, melde ich mich. "
        "Senden Sie {cmd}followups off, um sie zu beenden.",
    },
    "followups_off": {
        "en": "Follow-ups are off. Your reminders and check-ins go on as before. Send "
        "{cmd}followups on to have them again.",
        "de": "Nachfragen sind aus. Ihre Erinnerungen und Check-ins gehen weiter. Senden Sie "
        "{cmd}followups on, um sie wieder zu erhalten.",
    },
    "followups_usage": {
        "en": "Send {cmd}followups on, {cmd}followups off or {cmd}followups status.",
        "de": "Senden Sie {cmd}followups on, {cmd}followups off oder {cmd}followups status.",
    },
    "not_understood": {
        "en": "Sorry, I did not understand that. Messages here are not read by your care "
        "team; please contact them directly. Send {cmd}help to see what you can do.",
        "de": "Das habe ich leider nicht verstanden. Nachrichten hier liest Ihr "
        "Behandlungsteam nicht; bitte wenden Sie sich direkt an das Team. Senden Sie "
        "{cmd}help, um zu sehen, was Sie tun können.",
    },
    "schedule_usage": {
        "en": "Please write when, then the reminder text, e.g. "
        "{cmd}schedule daily 08:00 Take your medication",
        "de": "Bitte schreiben Sie, wann, und dann den Text der Erinnerung, z. B. "
        "{cmd}schedule daily 08:00 Medikament nehmen",
    },
    "schedule_no_text": {
        "en": "Please add the reminder text after the time, e.g. "
        "{cmd}schedule {phrase} Take your medication",
        "de": "Bitte schreiben Sie den Text der Erinnerung nach der Zeit, z. B. "
        "{cmd}schedule {phrase} Medikament nehmen",
    },
    "schedule_bad_phrase": {
        "en": "{error}\nFor example: {cmd}schedule daily 08:00 Take your medication",
        "de": "{error}\nZum Beispiel: {cmd}schedule daily 08:00 Medikament nehmen",
    },
    "schedule_refused": {
        "en": "This reminder could not be saved: {error}",
        "de": "Diese Erinnerung konnte nicht gespeichert werden: {error}",
    },
    "scheduled_one": {
        "en": "Reminder #{id} saved ({description}). The first one comes {when}.",
        "de": "Erinnerung #{id} gespeichert ({description}). Die erste kommt am {when}.",
    },
    "schedule_too_many": {
        "en": "You have {limit} reminders already, the most you can set up yourself. Stop "
        "one first with {cmd}{cancel} NUMBER (send {cmd}scheduled to see the numbers).",
        "de": "Sie haben bereits {limit} Erinnerungen, mehr können Sie selbst nicht anlegen. "
        "Beenden Sie zuerst eine mit {cmd}{cancel} NUMMER (Senden Sie {cmd}scheduled, um die "
        "Nummern zu sehen).",
    },
    "schedule_too_often": {
        "en": "A reminder you set up yourself can come at most every {limit} minutes. Please "
        "choose a longer interval, e.g. {cmd}schedule daily 08:00 Take your medication",
        "de": "Eine Erinnerung, die Sie selbst anlegen, kann höchstens alle {limit} Minuten "
        "kommen. Bitte wählen Sie einen längeren Abstand, z. B. {cmd}schedule daily 08:00 "
        "Medikament nehmen",
    },
    "inbox_link": {
        "en": "Your messages on the web: {url}\nThe link works for {days} days; a newer one "
        "replaces it. Keep it to yourself: whoever has it can read your messages.",
        "de": "Ihre Nachrichten im Web: {url}\nDer Link gilt {days} Tage; ein neuerer ersetzt "
        "ihn. Geben Sie ihn nicht weiter: Wer ihn hat, kann Ihre Nachrichten lesen.",
    },
    "inbox_ask_care_team": {
        "en": "Please ask your care team for a link to your messages on the web.",
        "de": "Bitte fragen Sie Ihr Behandlungsteam nach einem Link zu Ihren Nachrichten im Web.",
    },
    "opted_out_first": {
        "en": "You have stopped all messages. Send {cmd}start to receive them again first.",
        "de": "Sie haben alle Nachrichten abbestellt. Senden Sie zuerst {cmd}start, um wieder "
        "Nachrichten zu bekommen.",
    },
    "list_header": {
        "en": "Your reminders:",
        "de": "Ihre Erinnerungen:",
    },
    "list_row": {
        "en": "#{id} {description}, next {when}: {text}",
        "de": "#{id} {description}, nächste am {when}: {text}",
    },
    "list_empty": {
        "en": "You have no active reminders.",
        "de": "Sie haben keine aktiven Erinnerungen.",
    },
    "list_more": {
        "en": "... and {count} more.",
        "de": "... und {count} weitere.",
    },
    "repeating": {"en": "repeating", "de": "wiederholt"},
    "once": {"en": "once", "de": "einmalig"},
    "cancel_usage": {
        "en": "Please give the reminder's number, e.g. {cmd}{cancel} 12. "
        "Send {cmd}scheduled to see the numbers.",
        "de": "Bitte geben Sie die Nummer der Erinnerung an, z. B. {cmd}{cancel} 12. "
        "Senden Sie {cmd}scheduled, um die Nummern zu sehen.",
    },
    "cancel_done": {
        "en": "Reminder #{id} is cancelled.",
        "de": "Erinnerung #{id} ist beendet.",
    },
    "cancel_not_found": {
        "en": "You have no active reminder #{id}. Send {cmd}scheduled to see your reminders.",
        "de": "Sie haben keine aktive Erinnerung #{id}. Senden Sie {cmd}scheduled, um Ihre "
        "Erinnerungen zu sehen.",
    },
    "stopped": {
        "en": "You will receive no more messages from us. Your care team can see that you "
        "stopped them. Send {cmd}start at any time to receive them again.",
        "de": "Sie erhalten keine Nachrichten mehr von uns. Ihr Behandlungsteam sieht, dass "
        "Sie sie abbestellt haben. Senden Sie jederzeit {cmd}start, um sie wieder zu "
        "erhalten.",
    },
    "already_stopped": {
        "en": "You have already stopped all messages. Send {cmd}start to receive them again.",
        "de": "Sie haben bereits alle Nachrichten abbestellt. Senden Sie {cmd}start, um sie "
        "wieder zu erhalten.",
    },
    "resumed": {
        "en": "Welcome back. Your messages are on again ({count} reminders resumed). "
        "Send {cmd}help to see what you can do.",
        "de": "Willkommen zurück. Ihre Nachrichten sind wieder an ({count} Erinnerungen "
        "fortgesetzt). Senden Sie {cmd}help, um zu sehen, was Sie tun können.",
    },
    "only_text": {
        "en": "I can only read text. Send {cmd}help to see what you can do.",
        "de": "Ich kann nur Text lesen. Senden Sie {cmd}help, um zu sehen, was Sie tun können.",
    },
    "button_taken": {"en": "Taken", "de": "Genommen"},
    "button_snooze": {"en": "Snooze {minutes} min", "de": "{minutes} Min. später"},
    "button_skip": {"en": "Skip", "de": "Auslassen"},
    "ack_taken": {"en": "Taken at {time}.", "de": "Genommen um {time}."},
    "ack_snoozed": {
        "en": "Snoozed: I will remind you again at {time}.",
        "de": "Verschoben: Ich erinnere Sie um {time} noch einmal.",
    },
    "ack_skipped": {"en": "Skipped at {time}.", "de": "Ausgelassen um {time}."},
    "ack_already": {
        "en": "Your answer was already recorded: {choice}.",
        "de": "Ihre Antwort ist bereits gespeichert: {choice}.",
    },
    "ack_invalid": {
        "en": "This button is no longer valid.",
        "de": "Diese Schaltfläche ist nicht mehr gültig.",
    },
    "choice_taken": {"en": "taken", "de": "genommen"},
    "choice_snoozed": {"en": "snoozed", "de": "verschoben"},
    "choice_skipped": {"en": "skipped", "de": "ausgelassen"},
    "choice_missed": {"en": "missed", "de": "verpasst"},
}


def languages(language: str | None) -> list[str]:
    """The patient's language ("de-AT"), its base ("de"), then English."""
    wanted = (language or "").lower().replace("_", "-")
    return list(dict.fromkeys(c for c in (wanted, wanted.split("-")[0], FALLBACK) if c))


def say(key: str, language: str | None, **params: object) -> str:
    variants = TEXTS[key]
    for candidate in languages(language):
        if candidate in variants:
            params.setdefault("cmd", "/")
            params.setdefault("cancel", "cancel_schedule")
            return variants[candidate].format(**params)
    raise KeyError(key)  # every text has an English variant; a test checks it
