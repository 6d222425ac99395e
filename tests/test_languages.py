"""Every surface in the patient's language, the care team's pages in the provider's.

The catalogs (locale/<language>/LC_MESSAGES/django.po) are checked as data: every
message translated, none fuzzy, the same placeholders and tags on both sides, the
compiled .mo the same as its .po, and every marked string present (makemessages run
on a copy of the project). The rest goes through the real paths: the bot's webhook with
the fake Telegram server, the inbox page, the web UI, an e-mail over a real SMTP server.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from datetime import UTC, datetime
from email import message_from_bytes
from email.header import decode_header, make_header
from pathlib import Path

import polib
import pytest
from aiosmtpd.controller import Controller
from django.conf import settings as django_settings
from django.contrib.auth.models import User

from channels_app.models import InboxMessage
from patients.inbox_links import inbox_link_issue
from patients.models import Channel
from tests.test_bot import (
    SECRET,
    Updates,
    chat_of,
    dispatch_and_deliver,
    due_reminder,
    medication_reminder,
)
from tests.test_bot import say as bot_reply
from tests.test_channels import Recorder, add_contact

BASE_DIR = Path(django_settings.BASE_DIR)
TRANSLATED = [code for code, _ in django_settings.LANGUAGES if code != "en"]
# %(name)s, {name} and the HTML tags a text carries must survive translation unchanged.
PLACEHOLDER = re.compile(r"%\([a-z_]+\)[sd]|\{[a-z_]*\}|</?[a-z]+>")


def catalog(language: str) -> polib.POFile:
    return polib.pofile(str(BASE_DIR / "locale" / language / "LC_MESSAGES" / "django.po"))


def translations(entries) -> dict[tuple[str | None, str], tuple[str, ...]]:
    found = {}
    for entry in entries:
        if entry.msgid_plural:
            forms = tuple(entry.msgstr_plural[n] for n in sorted(entry.msgstr_plural))
        else:
            forms = (entry.msgstr,)
        found[(entry.msgctxt, entry.msgid)] = forms
    return found


# -- The catalogs ---------------------------------------------------------------------------


def test_the_shipped_languages_are_english_german_spanish_and_french():
    assert [code for code, _ in django_settings.LANGUAGES] == ["en", "de", "es", "fr"]


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_message_of_the_catalog_is_translated_and_none_is_fuzzy(language):
    po = catalog(language)

    assert len(po) > 100
    assert [e.msgid for e in po.untranslated_entries()] == []
    assert [e.msgid for e in po.fuzzy_entries()] == []
    assert not po.metadata_is_fuzzy  # a fuzzy header is left out of the .mo, plurals with it
    for entry in po:
        if entry.msgid_plural:
            assert all(form.strip() for form in entry.msgstr_plural.values()), entry.msgid


@pytest.mark.parametrize("language", TRANSLATED)
def test_placeholders_and_tags_are_the_same_in_every_translation(language):
    for entry in catalog(language):
        wanted = sorted(PLACEHOLDER.findall(entry.msgid))
        for form in translations([entry])[(entry.msgctxt, entry.msgid)]:
            assert sorted(PLACEHOLDER.findall(form)) == wanted, (entry.msgid, form)


@pytest.mark.parametrize("language", TRANSLATED)
def test_the_compiled_catalog_is_the_same_as_its_source(language):
    po = catalog(language)
    mo = polib.mofile(str(BASE_DIR / "locale" / language / "LC_MESSAGES" / "django.mo"))

    shipped = {key: forms for key, forms in translations(mo).items() if key[1]}
    assert shipped == translations(po), "run: manage.py compilemessages --ignore=.venv"


def test_the_catalogs_cover_every_string_marked_for_translation(tmp_path):
    """makemessages on a copy of the project finds no message the catalogs lack, and the
    catalogs keep none that is no longer marked."""
    assert shutil.which("xgettext"), "GNU gettext is missing: run deploy/ensure-gettext.sh"
    copy = tmp_path / "project"
    skip = shutil.ignore_patterns(
        ".venv", ".git", "staticfiles", "tests", "docs", ".bench-logs", "*_cache", "*.pyc"
    )
    shutil.copytree(BASE_DIR, copy, ignore=skip, symlinks=True)
    languages = [f"-l{language}" for language in TRANSLATED]
    command = [sys.executable, "manage.py", "makemessages", "--no-obsolete", *languages]
    environment = {**os.environ, "DJANGO_DEBUG": "true"}
    subprocess.run(command, cwd=copy, env=environment, check=True, capture_output=True)

    for language in TRANSLATED:
        fresh = polib.pofile(str(copy / "locale" / language / "LC_MESSAGES" / "django.po"))
        marked = {(e.msgctxt, e.msgid) for e in fresh if not e.obsolete}
        kept = {(e.msgctxt, e.msgid) for e in catalog(language)}
        assert marked - kept == set(), f"{language}: not in the catalog (makemessages)"
        assert kept - marked == set(), f"{language}: no longer marked (makemessages)"


# -- The bot --------------------------------------------------------------------------------


@pytest.fixture
def updates(client, fake_telegram, settings):
    settings.TELEGRAM_WEBHOOK_SECRET = SECRET
    settings.TELEGRAM_BOT_USERNAME = "fake_bot"
    return Updates(client)


def speaking(patient, language: str):
    patient.language = language
    patient.save(update_fields=["language"])
    return patient


def test_a_german_patient_gets_the_bots_replies_in_german_with_german_dates(
    updates, fake_telegram, make_patient
):
    german = speaking(make_patient(zone="Europe/Berlin"), "de")
    chat = chat_of(german)

    saved = bot_reply(updates, fake_telegram, chat, "/schedule daily 08:00 Tabletten nehmen")
    listed = bot_reply(updates, fake_telegram, chat, "/scheduled")

    assert saved.startswith("Erinnerung #") and "Die erste kommt am " in saved
    # "Mo., 30.11.2026, 08:00": Django's German weekday, the German date order.
    german_moment = r"(Mo|Di|Mi|Do|Fr|Sa|So)\., \d\d\.\d\d\.\d{4}, 08:00"
    assert re.search(german_moment, saved), saved
    assert listed.startswith("Ihre Erinnerungen:\n")
    assert re.search(r"nächste am " + german_moment + ": Tabletten nehmen", listed), listed


def test_each_patient_reads_their_own_language_one_after_the_other(
    updates, fake_telegram, make_patient
):
    patients = {
        language: speaking(make_patient(), language) for language in ("de", "es", "fr", "en")
    }
    patients["pt-BR"] = speaking(make_patient(), "pt-BR")  # no catalog: English

    replies = {
        language: bot_reply(updates, fake_telegram, chat_of(patient), "/help")
        for language, patient in patients.items()
    }

    assert replies["de"].startswith("Was Sie senden können:")
    assert replies["es"].startswith("Lo que puede enviar:")
    assert replies["fr"].startswith("Ce que vous pouvez envoyer :")
    assert replies["en"].startswith("What you can send:")
    assert replies["pt-BR"] == replies["en"]
    assert all("/schedule daily 08:00" in reply for reply in replies.values())


def test_a_spanish_patients_medication_reminder_has_spanish_buttons(fake_telegram, make_patient):
    spanish = speaking(make_patient(), "es")

    medication_reminder(spanish)

    (call,) = fake_telegram.sent(chat_of(spanish))
    keyboard = json.loads(call.params["reply_markup"])["inline_keyboard"]
    assert [button["text"] for button in keyboard[0]] == ["Tomada", "Aplazar 10 min", "Omitir"]


# -- The patient's inbox page ------------------------------------------------------------------


def test_a_spanish_patients_inbox_is_spanish_with_a_spanish_date(client, make_patient):
    spanish = speaking(make_patient(chat_id=None, zone="Europe/Madrid"), "es")
    item = InboxMessage.objects.create(patient=spanish, body="Hola", format="text")
    InboxMessage.objects.filter(pk=item.pk).update(
        created_at=datetime(2026, 3, 2, 9, 5, tzinfo=UTC)
    )
    path = inbox_link_issue(patient=spanish).path

    # The browser that opens the link asks for English: the page is the patient's language.
    response = client.get(path, HTTP_ACCEPT_LANGUAGE="en")

    page = response.content.decode()
    assert response["Content-Language"] == "es"
    assert '<html lang="es">' in page
    assert "<h1>Sus mensajes</h1>" in page and "Marcar como leídos" in page
    assert "lunes, 2 de marzo de 2026, 10:05" in page  # 09:05 UTC is 10:05 in Madrid


def test_an_english_patients_inbox_keeps_its_english_page(client, make_patient):
    english = make_patient(chat_id=None, zone="Europe/Madrid")
    item = InboxMessage.objects.create(patient=english, body="Hello", format="text")
    InboxMessage.objects.filter(pk=item.pk).update(
        created_at=datetime(2026, 3, 2, 9, 5, tzinfo=UTC)
    )

    page = client.get(inbox_link_issue(patient=english).path, HTTP_ACCEPT_LANGUAGE="fr")

    assert "<h1>Your messages</h1>" in page.content.decode()
    assert "2026-03-02 10:05" in page.content.decode()


# -- The care team's web UI ------------------------------------------------------------------


def test_a_provider_whose_browser_asks_for_french_sees_the_web_ui_in_french(demo_client):
    response = demo_client.get("/scheduled-messages/", HTTP_ACCEPT_LANGUAGE="fr-FR,fr;q=0.9")

    page = response.content.decode()
    assert response["Content-Language"] == "fr"
    assert '<html lang="fr">' in page
    assert "<h1>Messages programmés</h1>" in page
    assert "Nouveau message" in page and "Programmer un message" in page
    assert "Tous les statuts" in page  # a form's choice
    assert "Actif</span>" in page  # a message's status badge
    assert re.search(r"\d\d/\d\d/20\d\d \d\d:\d\d", page)  # dates day first
    assert re.search(r'lang="en"[^>]*>English</option>', page)  # each language in its own


def test_a_provider_without_accept_language_sees_english(demo_client):
    page = demo_client.get("/scheduled-messages/").content.decode()

    assert '<html lang="en">' in page and "<h1>Scheduled messages</h1>" in page


def test_a_providers_own_choice_wins_over_the_browser_and_can_be_undone(demo_client):
    chosen = demo_client.post(
        "/scheduled-messages/language/", {"language": "de", "next": "/scheduled-messages/new/"}
    )
    german = demo_client.get("/scheduled-messages/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    demo_client.post("/scheduled-messages/language/", {"language": ""})
    french = demo_client.get("/scheduled-messages/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()

    assert chosen.status_code == 302 and chosen["Location"] == "/scheduled-messages/new/"
    assert "<h1>Geplante Nachrichten</h1>" in german
    assert "<h1>Messages programmés</h1>" in french


def test_an_unknown_language_is_refused_and_nothing_is_saved(demo_client):
    response = demo_client.post("/scheduled-messages/language/", {"language": "xx"})
    away = demo_client.post(
        "/scheduled-messages/language/", {"language": "es", "next": "https://evil.example/"}
    )

    assert response.status_code == 400 and "language" in response.content.decode()
    assert away["Location"] == "/scheduled-messages/"
    user = User.objects.get(username="demo")
    assert user.provider_preference.language == "es"


# -- E-mail ----------------------------------------------------------------------------------


@pytest.fixture
def smtp_server(settings):
    recorder = Recorder()
    with socket.socket() as probe:  # a free port (the controller checks it by connecting)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    yield recorder
    controller.stop()


def test_an_email_to_a_french_patient_is_written_in_french(smtp_server, make_patient):
    french = speaking(make_patient(chat_id=None), "fr")
    add_contact(french, Channel.EMAIL, "patient@example.org")
    french.preferred_channel = Channel.EMAIL
    french.save(update_fields=["preferred_channel"])
    due_reminder(french)

    dispatch_and_deliver()

    [envelope] = smtp_server.envelopes
    mail = message_from_bytes(envelope.content)
    assert (
        str(make_header(decode_header(mail["Subject"]))) == "Un message de votre équipe soignante"
    )
    html = next(p for p in mail.walk() if p.get_content_type() == "text/html")
    assert '<html lang="fr">' in html.get_payload(decode=True).decode()
