"""Formatting per platform, e-mail over real SMTP, channel fallback, templates, web inbox."""

import html
import re
import socket

import pytest
from aiosmtpd.controller import Controller
from django.core.exceptions import ValidationError
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from channels_app.base import OutboundMessage, PermanentError, TransientError
from channels_app.content import TELEGRAM_TAGS, _TagChecker
from channels_app.email import EmailChannel
from channels_app.formatting import split_parts, to_plain_text, to_whatsapp
from channels_app.models import InboxMessage
from patients.inbox_links import inbox_link_issue
from patients.models import Contact
from scheduling.models import MessageTemplate
from scheduling.services import choose_channel, message_schedule_from_template
from tests.conftest import from_now

# -- Formatting -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "whatsapp", "plain"),
    [("<b>Dose</b> at <i>8</i>", "*Dose* at _8_", "Dose at 8"),
     ("a &lt; b &amp;&amp; c &gt; d", "a < b && c > d", "a < b && c > d"),
     ('see <a href="https://x.example/?a=1&amp;b=2">the plan</a>',
      "see the plan (https://x.example/?a=1&b=2)", "see the plan (https://x.example/?a=1&b=2)"),
     ("line one<br>line two", "line one\nline two", "line one\nline two"),
     ("Hello<p>Take <b>one</b></p><p>Bye</p>", "Hello\n\nTake *one*\n\nBye",
      "Hello\n\nTake one\n\nBye"),
     ("<s>old</s> <code>x=1</code>", "~old~ ```x=1```", "old x=1")],
)  # fmt: skip
def test_html_becomes_whatsapp_markup_and_readable_plain_text(source, whatsapp, plain):
    assert to_whatsapp(source, "html") == whatsapp
    assert to_plain_text(source, "html") == plain


def visible(part: str) -> str:
    return html.unescape(re.sub(r"<[^>]*>", "", part))


def balanced(part: str) -> bool:
    checker = _TagChecker(TELEGRAM_TAGS)
    checker.feed(part)
    checker.close()
    return not checker.open and not checker.problems


words = st.text(alphabet='abc<>&" \n', min_size=1, max_size=12)
segments = st.lists(
    st.tuples(st.sampled_from(["", "b", "i", "u", "code"]), words), min_size=1, max_size=60
)


@settings(max_examples=300, deadline=None)
@given(segments=segments, limit=st.integers(min_value=20, max_value=200))
def test_split_telegram_html_keeps_each_part_within_the_limit_balanced_and_intact(segments, limit):
    source = "".join(
        f"<{tag}>{html.escape(text, quote=False)}</{tag}>" if tag else html.escape(text, False)
        for tag, text in segments
    )
    parts = split_parts(source, limit, markup=True)
    for part in parts:
        assert len(visible(part)) <= limit, part
        assert balanced(part), part
    # Nothing lost or changed but the whitespace at the cuts; <, > and & come through.
    assert "".join("".join(visible(p) for p in parts).split()) == "".join(visible(source).split())


@settings(max_examples=200, deadline=None)
@given(text=st.text(min_size=1, max_size=3000), limit=st.integers(min_value=10, max_value=500))
def test_split_plain_text_keeps_each_part_within_the_limit(text, limit):
    parts = split_parts(text, limit, markup=False)
    assert all(len(part) <= limit for part in parts)
    assert "".join("".join(parts).split()) == "".join(text.split())


def test_a_long_message_is_cut_at_a_paragraph_before_a_line_or_a_word():
    paragraph = ("word " * 50).strip()
    parts = split_parts(f"{paragraph}\n\n{paragraph}\n\n{paragraph}", 600, markup=False)
    assert parts == [f"{paragraph}\n\n{paragraph}", paragraph]


# -- E-mail over a real SMTP server ----------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.envelopes = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address.startswith("nobody@"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.envelopes.append(envelope)
        return "250 Message accepted"


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


def outbound(address: str, text: str, fmt: str = "html") -> OutboundMessage:
    return OutboundMessage(delivery_id=1, patient_id=1, channel="email", address=address,
                           text=text, format=fmt)  # fmt: skip


def test_an_email_arrives_with_a_text_and_an_html_part(smtp_server):
    from email import message_from_bytes

    result = EmailChannel().send(outbound("pat@example.org", "<b>Dose</b> now &amp; later"))

    [envelope] = smtp_server.envelopes
    assert envelope.rcpt_tos == ["pat@example.org"]
    mail = message_from_bytes(envelope.content)
    parts = {part.get_content_type(): part.get_payload(decode=True).decode()
             for part in mail.walk() if not part.is_multipart()}  # fmt: skip
    assert parts["text/plain"].strip() == "Dose now & later"
    assert "<b>Dose</b> now &amp; later" in parts["text/html"]
    assert result.provider_message_id in mail["Message-ID"]


def test_the_html_part_of_an_email_is_sanitised_like_the_inbox(smtp_server):
    from email import message_from_bytes

    stored = (
        '<a href="javascript:alert(1)" onclick="steal()">go</a> <img src=x onerror=alert(1)>'
        '<span class="tg-spoiler">later</span> <a href="data:text/html,x">data</a>'
    )
    EmailChannel().send(outbound("pat@example.org", stored))

    mail = message_from_bytes(smtp_server.envelopes[0].content)
    [part] = [p for p in mail.walk() if p.get_content_type() == "text/html"]
    shown = part.get_payload(decode=True).decode()
    for unsafe in ("javascript", "onclick", "<img", "onerror", "data:"):
        assert unsafe not in shown
    assert '<span class="tg-spoiler">later</span>' in shown
    assert '<a rel="noopener noreferrer">go</a>' in shown


def test_a_refused_mailbox_is_permanent_and_a_dead_server_transient(smtp_server, settings):
    with pytest.raises(PermanentError) as refused:
        EmailChannel().send(outbound("nobody@example.org", "x", "text"))
    assert refused.value.code == "smtp_550"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        settings.EMAIL_PORT = probe.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(TransientError):
            EmailChannel().send(outbound("pat@example.org", "x", "text"))


# -- Channel choice ------------------------------------------------------------------------


def add_contact(patient, channel, address, *, verified=True, blocked=False):
    now = timezone.now()
    return Contact.objects.create(patient=patient, channel=channel, address=address,
                                  verified_at=now if verified else None,
                                  blocked_at=now if blocked else None)  # fmt: skip


def test_a_blocked_telegram_contact_falls_back_to_whatsapp(make_patient):
    patient = make_patient()
    patient.contacts.update(blocked_at=timezone.now())
    add_contact(patient, "whatsapp", "+4915112345678")
    assert choose_channel(patient, None) == "whatsapp"


def test_with_no_usable_contact_the_web_inbox_is_chosen(make_patient):
    patient = make_patient(chat_id=None)
    add_contact(patient, "sms", "+4915112345679", verified=False)  # not verified: not used
    add_contact(patient, "email", "pat@example.org", blocked=True)
    assert choose_channel(patient, None) == "web"


def test_the_preferred_channel_comes_before_the_fallback_order(make_patient):
    patient = make_patient()
    add_contact(patient, "email", "pat@example.org")
    patient.preferred_channel = "email"
    assert choose_channel(patient, None) == "email"


@pytest.mark.parametrize(("channel", "address"),
                         [("sms", "015112345678"), ("whatsapp", "+0123"), ("email", "not-mail"),
                          ("telegram", "@someone")])  # fmt: skip
def test_a_contact_address_the_channel_cannot_use_is_refused(make_patient, channel, address):
    contact = Contact(patient=make_patient(chat_id=None), channel=channel, address=address)
    with pytest.raises(ValidationError) as raised:
        contact.full_clean()
    assert "address" in raised.value.message_dict


# -- Templates -----------------------------------------------------------------------------


def test_a_template_is_rendered_in_the_patients_language(make_patient):
    german = make_patient()
    german.language = "de"
    english = make_patient()
    for patient, expected in ((german, "Hallo Patient 1"), (english, "Hello Patient 2")):
        message = message_schedule_from_template(
            patient=patient, template="check_in", starts_at=from_now(60)
        )
        assert message.content.startswith(expected)
        assert message.metadata["template"] == "check_in"


def test_a_language_without_a_template_falls_back_to_english_and_a_clinic_may_override(
    make_patient, organization
):
    patient = make_patient()
    patient.language = "pt-BR"
    message = message_schedule_from_template(patient=patient, template="follow_up",
                                             starts_at=from_now(60))  # fmt: skip
    assert message.metadata["template_language"] == "en"
    MessageTemplate.objects.create(organization=organization, key="follow_up", language="pt",
                                   body="Olá {name}, a sua equipa quer falar consigo.")  # fmt: skip
    message = message_schedule_from_template(patient=patient, template="follow_up",
                                             starts_at=from_now(60))  # fmt: skip
    assert message.content == "Olá Patient 1, a sua equipa quer falar consigo."


def test_a_missing_or_unknown_parameter_is_an_error_at_creation(make_patient):
    patient = make_patient()
    with pytest.raises(ValidationError) as missing:
        message_schedule_from_template(
            patient=patient, template="appointment_reminder", params={"time": "10:00"},
            starts_at=from_now(60),
        )  # fmt: skip
    assert "needs: date" in str(missing.value)
    with pytest.raises(ValidationError) as unknown:
        message_schedule_from_template(patient=patient, template="check_in",
                                       params={"mood": "x"}, starts_at=from_now(60))  # fmt: skip
    assert "no parameter: mood" in str(unknown.value)
    assert not patient.scheduled_messages.exists()


def test_parameters_are_escaped_in_html_templates(make_patient, organization):
    MessageTemplate.objects.create(organization=organization, key="note", language="en",
                                   format="html", body="<b>Note</b>: {text}")  # fmt: skip
    message = message_schedule_from_template(
        patient=make_patient(),
        template="note",
        params={"text": "<i>a</i> & b"},
        starts_at=from_now(60),
    )
    assert message.content == "<b>Note</b>: &lt;i&gt;a&lt;/i&gt; &amp; b"


def test_a_template_with_a_lookup_in_a_parameter_is_refused(organization):
    template = MessageTemplate(organization=organization, key="x", language="en",
                               body="Hi {name.__class__}")  # fmt: skip
    with pytest.raises(ValidationError) as raised:
        template.full_clean()
    assert "is not a parameter" in str(raised.value)


# -- Web inbox -----------------------------------------------------------------------------


def test_the_inbox_link_shows_the_patients_messages_sanitised(client, make_patient):
    patient, other = make_patient(chat_id=None), make_patient(chat_id=None)
    InboxMessage.objects.create(
        patient=patient,
        format="html",
        body='<b>Hi</b> <a href="javascript'
        ':x()" onclick="x()">go</a> <span class="tg-spoiler">s</span>',
    )
    InboxMessage.objects.create(patient=other, body="not yours", format="text")

    page = client.get(inbox_link_issue(patient=patient).path)

    shown = page.content.decode()
    assert page.status_code == 200
    assert "<b>Hi</b>" in shown and "javascript" not in shown and "not yours" not in shown
    assert "onclick" not in shown and '<span class="tg-spoiler">s</span>' in shown
    assert page["Cache-Control"] == "private, no-store"
    # Read marks come from the page's own POST (tests/test_inbox_links.py), not the GET.


def test_a_changed_inbox_link_finds_nothing(client, make_patient):
    path = inbox_link_issue(patient=make_patient(chat_id=None)).path
    assert client.get(path[:-3] + "xx/").status_code == 404
