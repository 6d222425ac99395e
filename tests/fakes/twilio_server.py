"""A fake Twilio REST API (Messages resource, 2010-04-01) on 127.0.0.1, for tests.

It records every POST /2010-04-01/Accounts/<sid>/Messages.json (and GET of the Account
resource, /2010-04-01/Accounts/<sid>.json, a configuration check) with its basic-auth
credentials and form fields, and answers from a script: by default 201 with a Message
resource as Twilio returns it (status queued, or accepted through a Messaging Service).
Without the account's credentials it answers 401 (20003); without From or
MessagingServiceSid, 400 (21603), as Twilio does. Scripted answers (Twilio errors with
their codes, 429 with Retry-After, 5xx, slow, dropped connection) are used up first.

MMS: a MediaUrl must be an http(s) address (21620, invalid media URL) and goes only to US
and Canadian numbers (+1, not a Caribbean NANP area code); to any other number it is
refused with 21612 (not reachable via MMS), as Twilio does for a sender without MMS
there. Twilio fetches the media after accepting the message (and reports a failed fetch
through the status callback), so the fake records the address; tests fetch it.
"""

import base64
import time
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from tests.fakes.base import BaseReply, FakeServer

JSON_UTF8 = "application/json; charset=utf-8"
# +1 area codes outside the US and Canada (the Caribbean's NANP members and Bermuda).
NANP_ELSEWHERE = {"242", "246", "264", "268", "284", "345", "441", "473", "649", "658", "664",
                  "721", "758", "767", "784", "809", "829", "849", "868", "869", "876"}  # fmt: skip


def takes_mms(number: str) -> bool:
    return number.startswith("+1") and len(number) == 12 and number[2:5] not in NANP_ELSEWHERE


ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "twilio-auth-token-secret"


@dataclass(frozen=True)
class Reply(BaseReply):
    status: int = 201

    @classmethod
    def error(cls, status: int, code: int, message: str, retry_after: str = "") -> "Reply":
        """An error body as Twilio's 2010-04-01 API answers it."""
        body = {"code": code, "message": message, "status": status,
                "more_info": f"https://www.twilio.com/docs/errors/{code}"}  # fmt: skip
        return cls(status, body, headers={"Retry-After": retry_after} if retry_after else {})

    @classmethod
    def unsubscribed(cls) -> "Reply":
        return cls.error(400, 21610, "Attempt to send to unsubscribed recipient")

    @classmethod
    def invalid_to(cls) -> "Reply":
        return cls.error(400, 21211, "Invalid 'To' Phone Number: +15005550001")

    @classmethod
    def not_mobile(cls) -> "Reply":
        return cls.error(400, 21614, "'To' number +15005550009 is not a valid mobile number")

    @classmethod
    def region_not_enabled(cls) -> "Reply":
        return cls.error(400, 21408, "Permission to send an SMS has not been enabled for the "
                         "region indicated by the 'To' number: +8613812345678")  # fmt: skip

    @classmethod
    def unreachable(cls) -> "Reply":
        return cls.error(400, 21612, "The 'To' phone number: +15005550002, is not currently "
                         "reachable using the 'From' phone number via SMS.")  # fmt: skip

    @classmethod
    def body_too_long(cls) -> "Reply":
        return cls.error(400, 21617, "The concatenated message body exceeds the 1600 "
                         "character limit")  # fmt: skip

    @classmethod
    def too_many_requests(cls, retry_after: str = "") -> "Reply":
        return cls.error(429, 20429, "Too Many Requests", retry_after)

    @classmethod
    def not_found(cls) -> "Reply":
        return cls.error(404, 20404, "The requested resource was not found")

    @classmethod
    def authenticate(cls) -> "Reply":
        return cls.error(401, 20003, "Authenticate")

    @classmethod
    def server_error(cls, status: int = 500) -> "Reply":
        return cls.error(status, 20500, "Internal Server Error")


@dataclass
class Call:
    account_sid: str  # from the path
    username: str  # from basic auth
    password: str
    params: dict[str, str]
    at: float
    status: int = 0


class FakeTwilio(FakeServer):
    SENT_STATUS = 201  # Created

    def __init__(self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        super().__init__()

    @property
    def base_url(self) -> str:
        return self.origin

    def _reply_for(self, call: Call) -> Reply:
        if (call.username, call.password) != (self.account_sid, self.auth_token):
            return Reply.authenticate()
        if call.account_sid != self.account_sid:
            return Reply.not_found()
        if not call.params.get("From") and not call.params.get("MessagingServiceSid"):
            return Reply.error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter "
                               "is required to send a message")  # fmt: skip
        media = call.params.get("MediaUrl")
        if media is not None:
            if urlsplit(media).scheme not in ("http", "https") or not urlsplit(media).netloc:
                return Reply.error(400, 21620, "Invalid media URL(s)")
            if not takes_mms(call.params.get("To", "")):
                return Reply.error(400, 21612, "The 'To' phone number is not currently "
                                   "reachable using the 'From' phone number via MMS.")  # fmt: skip
        return self._next_scripted(Reply())

    def _new_sid(self) -> str:
        with self._lock:
            self._state.next_id += 1
            return f"SM{self._state.next_id:032x}"

    def _message(self, params: dict[str, str]) -> dict:
        """The Message resource Twilio returns on creation."""
        sid, now = self._new_sid(), formatdate(usegmt=True)
        service = params.get("MessagingServiceSid")
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}"
        return {
            "account_sid": self.account_sid, "api_version": "2010-04-01",
            "body": params.get("Body", ""), "date_created": now, "date_sent": None,
            "date_updated": now, "direction": "outbound-api", "error_code": None,
            "error_message": None, "from": params.get("From"), "messaging_service_sid": service,
            "num_media": "1" if params.get("MediaUrl") else "0", "num_segments": "1",
            "price": None, "price_unit": "USD",
            "sid": sid, "status": "accepted" if service else "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"}, "to": params.get("To"),
            "uri": f"{uri}.json",
        }  # fmt: skip

    def _account(self) -> dict:
        return {"sid": self.account_sid, "friendly_name": "Test account", "status": "active",
                "type": "Full", "date_created": formatdate(usegmt=True),
                "uri": f"/2010-04-01/Accounts/{self.account_sid}.json"}  # fmt: skip

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args) -> None:  # noqa: A002 - stdlib signature
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                parts = self.path.strip("/").split("/")
                if (
                    len(parts) != 4
                    or parts[:2] != ["2010-04-01", "Accounts"]
                    or (parts[3] != "Messages.json")
                ):
                    fake.respond(self, Reply.not_found(), content_type=JSON_UTF8)
                    return
                params = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
                call = Call(parts[2], *self._credentials(), params, time.time())
                fake.respond(self, fake._reply_for(call), call,
                             success=lambda: fake._message(params),
                             content_type=JSON_UTF8)  # fmt: skip

            def do_GET(self) -> None:
                """The Account resource (GET /2010-04-01/Accounts/<sid>.json): a cheap call
                that checks the credentials, as Twilio answers it."""
                parts = self.path.split("?", 1)[0].strip("/").split("/")
                if len(parts) != 3 or parts[:2] != ["2010-04-01", "Accounts"]:
                    fake.respond(self, Reply.not_found(), content_type=JSON_UTF8)
                    return
                call = Call(parts[2].removesuffix(".json"), *self._credentials(), {}, time.time())
                if (call.username, call.password) != (fake.account_sid, fake.auth_token):
                    reply = Reply.authenticate()
                elif call.account_sid != fake.account_sid or not parts[2].endswith(".json"):
                    reply = Reply.not_found()
                else:
                    reply = Reply()
                fake.respond(self, reply, call, success=fake._account, content_type=JSON_UTF8)

            def _credentials(self) -> tuple[str, str]:
                scheme, _, encoded = self.headers.get("Authorization", "").partition(" ")
                if scheme != "Basic":
                    return "", ""
                username, _, password = base64.b64decode(encoded).decode().partition(":")
                return username, password

        return Handler
