"""WhatsApp through Meta's Cloud API (a Graph API endpoint) over HTTP.

One POST to {WHATSAPP_API_BASE_URL}/{phone number id}/messages per part: the text is
turned into WhatsApp markup and cut into parts of at most 4096 characters, sent in order.
An attachment goes first: uploaded to {phone number id}/media (multipart/form-data), then
sent by the media id it got as an image, audio or document message, with the text as its
caption when it fits in 1,024 characters (audio shows none); otherwise the text follows.
Uploading, not a link, keeps the file off any public address; Meta keeps it 30 days.
Meta's answers are sorted by the Graph error's `code` first and the HTTP status second,
because Meta reports one code with different statuses (131056 is described with 400 in
some references and 429 in others).

| Meta's answer                                          | raised                              |
|--------------------------------------------------------|-------------------------------------|
| HTTP 429; code 4, 80007, 130429 (throughput)           | TransientError rate_limited,        |
|                                                        |   Retry-After header, else 1 s      |
| code 131056 (pair rate limit: one business number to   | TransientError rate_limited,        |
|   one user, about one message per 6 s)                 |   Retry-After header, else 6 s      |
| code 131047 (re-engagement: the user last wrote more   | PermanentError template_required    |
|   than 24 h ago; only a template may be sent)          |                                     |
| code 131050 (user stopped marketing messages), or an   | RecipientBlocked whatsapp_<code>    |
|   unlisted code whose text says "blocked"              |                                     |
| HTTP 401; code 190 (token expired or revoked), 10 and  | PermanentError not_configured       |
|   200-299 (permissions)                                |                                     |
| code 131026 (undeliverable), 131030 (not in the test   | PermanentError whatsapp_<code>,     |
|   number's allowed list), 131009 and 100 (invalid      |   Meta's message and details        |
|   parameter); 368, 131031, 131048 (our own number is   |                                     |
|   restricted); any other 4xx with a code               |                                     |
| HTTP 5xx; code 2, 131000, 131016, 131057 (Meta down,   | TransientError network              |
|   overloaded or upgrading the number); timeouts,       |                                     |
|   refused or dropped connections; an answer that is    |                                     |
|   not JSON or has no message id                        |                                     |
| WHATSAPP_TOKEN or WHATSAPP_PHONE_NUMBER_ID empty       | PermanentError not_configured       |

Confirmed from Meta's pages and third-party references to them: the request shape; the
error body {"error": {"message", "type", "code", "error_data": {"details"}, "fbtrace_id"}};
the success body {"messaging_product", "contacts": [{"input", "wa_id"}], "messages":
[{"id": "wamid..."}]}; the meaning of 130429, 131056 (with the 6 s pair pace), 131047,
131026, 131050, 131009 and 190 with HTTP 401.

Not confirmed: whether Meta ever sends Retry-After (the defaults above assume it does
not); the exact HTTP status for each code (hence code first); the meaning of 4, 80007,
131030, 131016 and 131057, taken from memory of Meta's table; and above all which of these
errors come back in the HTTP answer at all. Meta says an error may come synchronously,
through the `messages` webhook, or both; 131047, 131026 and 131050 are commonly reported
through the webhook after the API accepted the message with a wamid. Without a WhatsApp
webhook receiver those sends look "sent" here. The "blocked" text match is a heuristic:
Meta asks not to rely on message texts, and codes about our own number are excluded.
"""

import logging
from collections.abc import Mapping
from dataclasses import replace

import requests

from channels_app.attachments import PHOTO, VOICE, caption_length
from channels_app.base import (
    ChannelError,
    ConcurrentHttpAdapter,
    OutboundMessage,
    PermanentError,
    RecipientBlocked,
    SendResult,
    TransientError,
)
from channels_app.formatting import PART_LENGTH, message_parts
from channels_app.http import http_session, retry_after, without_numbers

logger = logging.getLogger(__name__)

MAX_MESSAGE_LENGTH = PART_LENGTH["whatsapp"]

THROUGHPUT_CODES = frozenset({4, 80007, 130429})
PAIR_RATE_LIMIT_CODE = 131056
TEMPLATE_REQUIRED_CODE = 131047
OPTED_OUT_CODES = frozenset({131050})
TOKEN_CODES = frozenset({190, 10, *range(200, 300)})
PROVIDER_UNWELL_CODES = frozenset({2, 131000, 131016, 131057})
# Known refusals, sorted before the "blocked" text rule: 131026 may mention a block among
# other causes, and 368, 131031, 131048 restrict our own number, not the patient's.
PERMANENT_CODES = frozenset({100, 131009, 131026, 131030, 368, 131031, 131048})


class WhatsAppChannel(ConcurrentHttpAdapter):
    name = "whatsapp"

    def __init__(self, *, token: str, phone_number_id: str, base_url: str, timeout: float) -> None:
        self._token = token
        self._phone_number_id = phone_number_id
        self._url = f"{base_url.rstrip('/')}/{phone_number_id}/messages"
        self._media_url = f"{base_url.rstrip('/')}/{phone_number_id}/media"
        self._timeout = timeout

    def parts(self, message: OutboundMessage) -> list[OutboundMessage]:
        texts = message_parts(self.name, message.text, message.format) if message.text else []
        media = []
        if message.attachment is not None:
            limit = caption_length(self.name, message.attachment.kind) or 0
            fits = len(texts) == 1 and len(texts[0]) <= limit
            media = [replace(message, text=texts[0] if fits else "", format="text")]
            texts = [] if fits else texts
        return media + [
            replace(message, text=text, format="text", attachment=None) for text in texts
        ]

    def send(self, message: OutboundMessage) -> SendResult:
        self._check_configured()
        parts = self.parts(message)
        if not parts:
            raise PermanentError("empty", "the message has no text to send")
        ids = [self._send_part(message, part) for part in parts]
        logger.info("delivery %s: whatsapp accepted %d part(s)", message.delivery_id, len(ids))
        return SendResult(provider_message_id=",".join(ids))

    def _check_configured(self) -> None:
        if not self._token:
            raise PermanentError("not_configured", "WHATSAPP_TOKEN is not set")
        if not self._phone_number_id:
            raise PermanentError("not_configured", "WHATSAPP_PHONE_NUMBER_ID is not set")

    def _send_part(self, message: OutboundMessage, part: OutboundMessage) -> str:
        payload = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": message.address.removeprefix("+"),
        }
        if part.attachment is None:
            payload |= {"type": "text", "text": {"preview_url": False, "body": part.text}}
        else:
            payload |= self._media_payload(part)
        return _message_id(self._post(self._url, json=payload), message.delivery_id)

    def _media_payload(self, part: OutboundMessage) -> dict:
        attachment = part.attachment
        kind = {PHOTO: "image", VOICE: "audio"}.get(attachment.kind, "document")
        media = {"id": self._upload(part)}
        if part.text and kind != "audio":
            media["caption"] = part.text
        if kind == "document":
            media["filename"] = attachment.filename
        return {"type": kind, kind: media}

    def _upload(self, part: OutboundMessage) -> str:
        """The media id Meta gives the uploaded file."""
        attachment = part.attachment
        form = {"messaging_product": "whatsapp", "type": attachment.content_type}
        files = {"file": (attachment.filename, attachment.read(), attachment.content_type)}
        response = self._post(self._media_url, data=form, files=files)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        media_id = str(answer.get("id") or "") if isinstance(answer, dict) else ""
        if response.ok and media_id:
            return media_id
        error = _error_for(response.status_code, answer, response.headers)
        logger.info(
            "delivery %s: whatsapp media upload HTTP %s, %s",
            part.delivery_id,
            response.status_code,
            error.code,
        )
        raise error

    def _post(self, url: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            return http_session().post(url, headers=headers, timeout=self._timeout, **kwargs)
        except requests.RequestException as exc:
            # The name only: the exception's text is not ours to vouch for.
            raise TransientError("network", f"WhatsApp: {type(exc).__name__}") from exc


def _message_id(response: requests.Response, delivery_id: int) -> str:
    try:
        answer = response.json()
    except ValueError:
        answer = None
    found = _first_message_id(answer)
    if response.ok and found:
        return found
    error = _error_for(response.status_code, answer, response.headers)
    logger.info("delivery %s: whatsapp HTTP %s, %s", delivery_id, response.status_code, error.code)
    raise error


def _first_message_id(answer: object) -> str:
    messages = answer.get("messages") if isinstance(answer, dict) else None
    first = messages[0] if isinstance(messages, list) and messages else None
    return str(first.get("id") or "") if isinstance(first, dict) else ""


def _error_for(status: int, answer: object, headers: Mapping[str, str]) -> ChannelError:
    error = answer.get("error") if isinstance(answer, dict) else None
    if not isinstance(error, dict):
        return _uncoded_error(status, headers)
    code = error.get("code")
    code = code if isinstance(code, int) else 0
    return _coded_error(status, code, _reason(error), headers)


def _uncoded_error(status: int, headers: Mapping[str, str]) -> ChannelError:
    """An answer without a Graph error: a proxy's page, a cut body, a success without id."""
    if status == 429:
        return TransientError(
            "rate_limited", "WhatsApp: HTTP 429", retry_after=retry_after(headers, 1.0)
        )
    if status == 401:
        return PermanentError("not_configured", "Meta rejected WHATSAPP_TOKEN (HTTP 401)")
    return TransientError("network", f"WhatsApp: unexpected answer (HTTP {status})")


def _coded_error(status: int, code: int, reason: str, headers: Mapping[str, str]) -> ChannelError:
    if status == 429 or code in THROUGHPUT_CODES or code == PAIR_RATE_LIMIT_CODE:
        default = 6.0 if code == PAIR_RATE_LIMIT_CODE else 1.0
        return TransientError("rate_limited", reason, retry_after=retry_after(headers, default))
    if code == TEMPLATE_REQUIRED_CODE:
        return PermanentError("template_required", reason)
    if status == 401 or code in TOKEN_CODES:
        # Meta's text is left out: it is about our token, and never needed to fix it.
        return PermanentError(
            "not_configured", f"Meta rejected WHATSAPP_TOKEN or its permissions (code {code})"
        )
    if code in PERMANENT_CODES:
        return PermanentError(f"whatsapp_{code}", reason)
    if status >= 500 or code in PROVIDER_UNWELL_CODES:
        return TransientError("network", reason)
    if code in OPTED_OUT_CODES or "blocked" in reason.lower():
        return RecipientBlocked(f"whatsapp_{code}", reason)
    return PermanentError(f"whatsapp_{code}", reason)


def _reason(error: dict) -> str:
    """Meta's message and details, without phone numbers, short enough for the admin."""
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    text = str(error.get("message") or "WhatsApp error")
    if details and str(details) not in text:
        text = f"{text}: {details}"
    return without_numbers(text)
