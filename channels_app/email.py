"""E-mail through Django's mail framework (SMTP settings from the environment).

Every message goes out with a plain-text body and an HTML alternative, so any mail
client shows it; the HTML is cleaned by the same allow-list as the web inbox. An
attachment is attached under a name made of its kind and type ("photo.jpg"), never the
name it was uploaded as. SMTP
answers are sorted like a provider's: 4xx and dropped connections are transient, 5xx
refusals of the recipient are permanent.
"""

import smtplib
from email.utils import make_msgid

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.utils import translation
from django.utils.translation import gettext

from channels_app.base import (
    ChannelAdapter,
    OutboundMessage,
    PermanentError,
    SendResult,
    TransientError,
)
from channels_app.content import safe_html
from channels_app.formatting import to_plain_text
from patients.languages import patient_language


class EmailChannel(ChannelAdapter):
    name = "email"

    def send(self, message: OutboundMessage) -> SendResult:
        message_id = make_msgid(domain=settings.DEFAULT_FROM_EMAIL.rpartition("@")[2] or None)
        mail = EmailMultiAlternatives(
            subject=_subject(message.language),
            body=to_plain_text(message.text, message.format),
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[message.address],
            headers={"Message-ID": message_id},
            connection=get_connection(timeout=settings.EMAIL_TIMEOUT),
        )
        html = _as_html(message.text, message.format, patient_language(message.language))
        mail.attach_alternative(html, "text/html")
        if message.attachment is not None:
            attachment = message.attachment
            mail.attach(attachment.filename, attachment.read(), attachment.content_type)
        try:
            mail.send()
        except smtplib.SMTPRecipientsRefused as exc:
            code, reason = next(iter(exc.recipients.values()))
            raise _smtp_error(code, reason) from exc
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentError("not_configured", "the SMTP server refused our login") from exc
        except smtplib.SMTPResponseException as exc:
            raise _smtp_error(exc.smtp_code, exc.smtp_error) from exc
        except (smtplib.SMTPException, OSError) as exc:
            # Refused or dropped connections, timeouts, TLS failures.
            raise TransientError("network", f"SMTP: {type(exc).__name__}") from exc
        return SendResult(provider_message_id=message_id.strip("<>")[:128])


def _subject(language: str) -> str:
    if settings.EMAIL_SUBJECT:
        return settings.EMAIL_SUBJECT
    with translation.override(patient_language(language)):
        return gettext("A message from your care team")


def _as_html(content: str, fmt: str, language: str) -> str:
    # Cleaned like the web inbox: a mail client renders it too (docs/security.md, item 17).
    body = safe_html(content, fmt).replace("\n", "<br>")
    return f'<html lang="{language}"><body><p>{body}</p></body></html>'


def _smtp_error(code: int, reason: bytes | str) -> Exception:
    text = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
    if 400 <= code < 500:
        return TransientError(f"smtp_{code}", text[:200])
    return PermanentError(f"smtp_{code}", text[:200])
