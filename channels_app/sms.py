"""SMS through Twilio's REST API (2010-04-01), form-encoded, with HTTP basic auth.

One POST to {TWILIO_API_BASE_URL}/2010-04-01/Accounts/{sid}/Messages.json per message:
the text as plain text (Twilio concatenates up to 1600 characters; content.py refuses
longer ones), from TWILIO_MESSAGING_SERVICE_SID when set, else TWILIO_FROM_NUMBER, with a
StatusCallback to conversations.callbacks when PUBLIC_BASE_URL is set.
An attachment goes as MMS (MediaUrl: a signed, expiring address of the file on this site,
which Twilio fetches) to US and Canadian numbers, the only ones Twilio sends MMS to; any
other number gets the text with that address written after it. Without PUBLIC_BASE_URL
there is no address Twilio could fetch: such a send fails with `mms_unavailable` (the
message is refused when it is written, so this is only a site whose setting changed).
Twilio's error body
is {"code", "message", "more_info", "status"}; its `message` often repeats the phone
number, so known codes get our own text and others have numbers removed.

| Twilio's answer                                      | raised                              |
|------------------------------------------------------|-------------------------------------|
| code 21610 (the recipient replied STOP)              | RecipientBlocked twilio_21610       |
| code 21211 (invalid To), 21614 (not a mobile number),| PermanentError twilio_<code>        |
|   21408 (region not enabled), 21612 (To unreachable  |                                     |
|   from our sender); any other 4xx with a code        |                                     |
| HTTP 429, code 20429 (too many requests)             | TransientError rate_limited,        |
|                                                      |   Retry-After header, else 1 s      |
| HTTP 401, code 20003 (authentication)                | PermanentError not_configured       |
| HTTP 5xx, timeouts, refused or dropped connections,  | TransientError network              |
|   an answer that is not JSON or has no sid           |                                     |
| an address that is not E.164                         | PermanentError invalid_number       |
| no account sid or token; neither sender set          | PermanentError not_configured       |

Confirmed from Twilio's pages and references to them: the endpoint, form fields and basic
auth; the error body; the meaning of 21610, 21211, 21614, 21408, 21612, 20003 and 20429.

Not confirmed: whether the 2010-04-01 Messages endpoint sends a Retry-After header with
429 (Twilio's newer APIs document one); which HTTP status goes with each code (the code
decides here). Delivery failures after acceptance (30003 unreachable, 30007 filtered, ...)
never come back here; they arrive later through the status callback.
"""

import logging
import re
from collections.abc import Mapping
from urllib.parse import quote

import requests

from channels_app.base import (
    ChannelError,
    ConcurrentHttpAdapter,
    OutboundMessage,
    PermanentError,
    RecipientBlocked,
    SendResult,
    TransientError,
)
from channels_app.formatting import to_plain_text
from channels_app.http import http_session, retry_after, without_numbers

logger = logging.getLogger(__name__)

E164 = re.compile(r"\+[1-9]\d{6,14}")
BLOCKED_CODES = frozenset({21610})
RATE_LIMIT_CODE = 20429
AUTHENTICATION_CODE = 20003
# Our own words for the codes we expect: Twilio's messages often repeat the number.
REASONS = {
    21610: "the recipient replied STOP; they must reply START to get SMS again",
    21211: "Twilio says the 'To' number is not a valid phone number",
    21614: "the 'To' number is not a mobile number that can receive SMS",
    21408: "sending SMS to the recipient's region is not enabled in the Twilio account",
    21612: "the 'To' number cannot be reached from our sender by SMS",
}


# +1 numbers outside the US and Canada (the Caribbean's NANP members, Bermuda): no MMS.
NANP_ELSEWHERE = frozenset(
    {
        "242",
        "246",
        "264",
        "268",
        "284",
        "345",
        "441",
        "473",
        "649",
        "658",
        "664",
        "721",
        "758",
        "767",
        "784",
        "809",
        "829",
        "849",
        "868",
        "869",
        "876",
    }
)


def takes_mms(number: str) -> bool:
    """Whether Twilio sends MMS to this number: US and Canadian numbers only."""
    return number.startswith("+1") and len(number) == 12 and number[2:5] not in NANP_ELSEWHERE


def is_e164(number: str) -> bool:
    """An E.164 number: +, a country code not starting with 0, 7 to 15 digits in all."""
    return E164.fullmatch(number) is not None


class TwilioSmsChannel(ConcurrentHttpAdapter):
    name = "sms"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str,
        messaging_service_sid: str,
        base_url: str,
        timeout: float,
        status_callback_url: str,
    ) -> None:
        self._auth = (account_sid, auth_token)
        self._from_number = from_number
        self._messaging_service_sid = messaging_service_sid
        self._url = (
            f"{base_url.rstrip('/')}/2010-04-01/Accounts/{quote(account_sid, safe='')}"
            "/Messages.json"
        )
        self._timeout = timeout
        self._status_callback_url = status_callback_url

    def send(self, message: OutboundMessage) -> SendResult:
        self._check_configured()
        if not is_e164(message.address):
            raise PermanentError("invalid_number", "the SMS address is not an E.164 number")
        try:
            response = http_session().post(
                self._url, data=self._form(message), auth=self._auth, timeout=self._timeout
            )
        except requests.RequestException as exc:
            # The name only: the exception's text is not ours to vouch for.
            raise TransientError("network", f"Twilio: {type(exc).__name__}") from exc
        sid = _created_sid(response, message.delivery_id)
        logger.info("delivery %s: twilio accepted message %s", message.delivery_id, sid)
        return SendResult(provider_message_id=sid[:128])

    def _check_configured(self) -> None:
        if not self._auth[0] or not self._auth[1]:
            raise PermanentError(
                "not_configured", "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN must both be set"
            )
        if not self._from_number and not self._messaging_service_sid:
            raise PermanentError(
                "not_configured", "set TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID"
            )

    def _form(self, message: OutboundMessage) -> dict[str, str]:
        form = {"To": message.address, "Body": to_plain_text(message.text, message.format)}
        attachment = message.attachment
        if attachment is not None:
            if not attachment.url:
                raise PermanentError(
                    "mms_unavailable", "an SMS attachment needs PUBLIC_BASE_URL for Twilio to fetch"
                )
            if takes_mms(message.address):
                form["MediaUrl"] = attachment.url
            else:
                form["Body"] = f"{form['Body']}\n\n{attachment.url}".strip()
        if self._messaging_service_sid:
            # The service picks the sender from its pool; From would override it.
            form["MessagingServiceSid"] = self._messaging_service_sid
        else:
            form["From"] = self._from_number
        if self._status_callback_url:
            form["StatusCallback"] = self._status_callback_url
        return form


def _created_sid(response: requests.Response, delivery_id: int) -> str:
    try:
        answer = response.json()
    except ValueError:
        answer = None
    sid = str(answer.get("sid") or "") if isinstance(answer, dict) else ""
    if response.ok and sid:
        return sid
    error = _error_for(response.status_code, answer, response.headers)
    logger.info("delivery %s: twilio HTTP %s, %s", delivery_id, response.status_code, error.code)
    raise error


def _error_for(status: int, answer: object, headers: Mapping[str, str]) -> ChannelError:
    body = answer if isinstance(answer, dict) else {}
    code = body.get("code") if isinstance(body.get("code"), int) else None
    if status == 429 or code == RATE_LIMIT_CODE:
        return TransientError(
            "rate_limited", "Twilio: too many requests", retry_after=retry_after(headers, 1.0)
        )
    if status == 401 or code == AUTHENTICATION_CODE:
        return PermanentError(
            "not_configured", "Twilio refused TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN"
        )
    if status >= 500 or code is None:
        return TransientError("network", f"Twilio: unexpected answer (HTTP {status})")
    reason = REASONS.get(code) or without_numbers(str(body.get("message") or ""))
    if code in BLOCKED_CODES:
        return RecipientBlocked(f"twilio_{code}", reason)
    return PermanentError(f"twilio_{code}", reason or f"Twilio error {code}")
