"""A fake WhatsApp Cloud API (Meta Graph API) server on 127.0.0.1, for tests.

It records every POST /<version>/<phone number id>/messages it receives (and GET
/<version>/<phone number id>, the number's details, a configuration check) and answers from
a script: by default success, with the body the Cloud API sends (messaging_product,
contacts, messages[0].id = a wamid); scripted answers (Graph errors with their codes,
5xx, slow, dropped connection, a body that is not JSON) are used up first.

Media as the Cloud API takes it: POST /<version>/<phone number id>/media (multipart/
form-data: messaging_product=whatsapp, type, file) answers {"id": <media id>} for a type
on Meta's list within its size (image JPEG/PNG 5 MB; audio AAC, AMR, MP3, M4A, OGG 16 MB;
documents 100 MB; video 16 MB; stickers WebP 500 KB) and whose declared type is the
file's; anything else gets error 131053 (media upload error). A media message (image,
audio, document, video) must name an uploaded id or an https link; a caption is at most
1,024 characters and not allowed on audio (error 100, invalid parameter).
"""

import base64
import json
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from tests.fakes.base import BaseReply, FakeServer, UploadedFile, parse_multipart

VERSION = "v21.0"
MB = 1024 * 1024
MEDIA_TYPES = {
    **dict.fromkeys(("image/jpeg", "image/png"), 5 * MB),
    **dict.fromkeys(("audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"), 16 * MB),
    **dict.fromkeys(("application/pdf", "text/plain", "application/msword",
                     "application/vnd.ms-excel", "application/vnd.ms-powerpoint",
                     "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                     "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                     "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
                    100 * MB),
    **dict.fromkeys(("video/mp4", "video/3gpp"), 16 * MB),
    "image/webp": 500 * 1024,
}  # fmt: skip
MEDIA_MESSAGE_TYPES = {"image": "image/", "audio": "audio/", "document": "", "video": "video/"}
CAPTION_LENGTH = 1024


@dataclass(frozen=True)
class Reply(BaseReply):
    @classmethod
    def graph_error(
        cls, status: int, code: int, message: str, details: str = "", retry_after: str = ""
    ) -> "Reply":
        """A Graph API error as the Cloud API answers it; Retry-After only when given."""
        error: dict = {"message": message, "type": "OAuthException", "code": code,
                       "fbtrace_id": "AbCdEfGhIjKlMnOp"}  # fmt: skip
        if details:
            error["error_data"] = {"messaging_product": "whatsapp", "details": details}
        headers = {"Retry-After": retry_after} if retry_after else {}
        return cls(status, {"error": error}, headers=headers)

    @classmethod
    def throughput_limit(cls, retry_after: str = "") -> "Reply":
        return cls.graph_error(400, 130429, "(#130429) Rate limit hit",
                               "Cloud API message throughput has been reached.",
                               retry_after)  # fmt: skip

    @classmethod
    def too_many_calls(cls) -> "Reply":
        return cls.graph_error(400, 4, "(#4) Application request limit reached")

    @classmethod
    def waba_rate_limit(cls) -> "Reply":
        return cls.graph_error(400, 80007, "(#80007) Rate limit issues")

    @classmethod
    def pair_rate_limit(cls, status: int = 400, retry_after: str = "") -> "Reply":
        return cls.graph_error(
            status, 131056, "(#131056) (Business Account, Consumer Account) pair rate limit hit",
            "Too many messages sent from the sender phone number to the same recipient "
            "phone number in a short period of time.", retry_after,
        )  # fmt: skip

    @classmethod
    def re_engagement(cls) -> "Reply":
        return cls.graph_error(400, 131047, "(#131047) Re-engagement message",
                               "Message failed to send because more than 24 hours have passed "
                               "since the customer last replied to this number.")  # fmt: skip

    @classmethod
    def undeliverable(cls) -> "Reply":
        return cls.graph_error(400, 131026, "(#131026) Message Undeliverable",
                               "Unable to deliver message to +49 151 1234 5678.")  # fmt: skip

    @classmethod
    def not_in_allowed_list(cls) -> "Reply":
        return cls.graph_error(400, 131030, "(#131030) Recipient phone number not in allowed "
                               "list", "Add recipient phone number to recipient list and "
                               "try again.")  # fmt: skip

    @classmethod
    def invalid_parameter(cls, code: int = 131009) -> "Reply":
        return cls.graph_error(400, code, f"(#{code}) Parameter value is not valid",
                               "The parameter to is not a valid phone number.")  # fmt: skip

    @classmethod
    def stopped_marketing(cls) -> "Reply":
        return cls.graph_error(400, 131050, "(#131050) Unable to deliver the message. This "
                               "recipient has chosen to stop receiving marketing messages on "
                               "WhatsApp from your business.")  # fmt: skip

    @classmethod
    def blocked(cls) -> "Reply":
        # No documented code: Meta folds a block into 131026. This one exercises the rule
        # that an unlisted error saying "blocked" is the recipient's doing.
        return cls.graph_error(400, 131999, "(#131999) The recipient blocked this business")

    @classmethod
    def spam_rate_limit(cls) -> "Reply":
        return cls.graph_error(400, 131048, "(#131048) Spam rate limit hit",
                               "Message failed to send because there are restrictions on how "
                               "many messages can be sent from this phone number. This may be "
                               "because too many previous messages were blocked or flagged as "
                               "spam.")  # fmt: skip

    @classmethod
    def token_expired(cls) -> "Reply":
        return cls.graph_error(401, 190, "Error validating access token: Session has expired.")

    @classmethod
    def server_error(cls, status: int = 500) -> "Reply":
        return cls.graph_error(status, 131000, "(#131000) Something went wrong")


@dataclass
class Call:
    phone_number_id: str
    authorization: str
    content_type: str
    params: dict
    at: float
    status: int = 0
    file: UploadedFile | None = None  # an upload to /media
    endpoint: str = "messages"  # or "media"


def _upload_error(details: str) -> "Reply":
    return Reply.graph_error(400, 131053, "(#131053) Media upload error", details)


def _sniffed(data: bytes) -> str:
    """The file's type from its first bytes, for the types the tests upload."""
    signatures = [(b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG", "image/png"),
                  (b"%PDF", "application/pdf"), (b"OggS", "audio/ogg"), (b"ID3", "audio/mpeg"),
                  (b"GIF8", "image/gif")]  # fmt: skip
    for signature, kind in signatures:
        if data.startswith(signature):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "audio/mp4" if data[4:8] == b"ftyp" else "application/octet-stream"


class FakeWhatsApp(FakeServer):
    def __init__(self) -> None:
        self._media: dict[str, UploadedFile] = {}
        super().__init__()

    def messages_sent(self) -> list[Call]:
        """Messages (not uploads) answered as sent, in order."""
        return [c for c in self.sent() if c.endpoint == "messages"]

    @property
    def base_url(self) -> str:
        """What WHATSAPP_API_BASE_URL would be: the Graph API with its version."""
        return f"{self.origin}/{VERSION}"

    def _new_wamid(self, to: str) -> str:
        with self._lock:
            self._state.next_id += 1
            number = self._state.next_id
        return "wamid." + base64.b64encode(f"HBgL{to}FQIAERgS{number:020d}".encode()).decode()

    def _success(self, params: dict) -> dict:
        to = str(params.get("to", ""))
        return {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                "messages": [{"id": self._new_wamid(to)}]}  # fmt: skip

    def media(self) -> dict[str, UploadedFile]:
        """Files uploaded and accepted, by media id."""
        with self._lock:
            return dict(self._media)

    def _store_media(self, file: UploadedFile) -> str:
        with self._lock:
            self._state.next_id += 1
            media_id = f"{self._state.next_id:016d}"
            self._media[media_id] = file
        return media_id

    def _upload_reply(self, fields: dict, files: dict) -> "Reply | None":
        """Meta's refusal of an upload, or None when it takes it."""
        file = files.get("file")
        if fields.get("messaging_product") != "whatsapp" or file is None:
            return Reply.graph_error(400, 100, "(#100) The parameter messaging_product and "
                                     "file are required.")  # fmt: skip
        declared = fields.get("type", "")
        if declared not in MEDIA_TYPES:
            return _upload_error(f"Param type: {declared or '(none)'} is not a supported type")
        checked = declared.startswith(("image/", "audio/", "video/", "application/pdf"))
        if checked and _sniffed(file.data) != declared:
            return _upload_error("The file's content does not match its type")
        if len(file.data) > MEDIA_TYPES[declared]:
            return _upload_error(
                f"File too big for {declared}: {MEDIA_TYPES[declared]} bytes at most"
            )
        return None

    def _message_reply(self, params: dict) -> "Reply | None":
        """Meta's refusal of a media message, or None."""
        kind = params.get("type")
        if kind not in MEDIA_MESSAGE_TYPES:
            return None
        media = params.get(kind)
        if not isinstance(media, dict):
            return Reply.invalid_parameter(100)
        with self._lock:
            uploaded = self._media.get(str(media.get("id", "")))
        link = str(media.get("link", ""))
        if uploaded is None and not link.startswith("https://"):
            return Reply.graph_error(400, 100, f"(#100) Param {kind}['id'] is not a valid "
                                     "media id, and no https link was given")  # fmt: skip
        expected = MEDIA_MESSAGE_TYPES[kind]
        if uploaded is not None and not uploaded.content_type.startswith(expected):
            return Reply.graph_error(400, 100, f"(#100) The media is not of type {kind}")
        caption = media.get("caption")
        if caption is not None and kind == "audio":
            return Reply.graph_error(400, 100, "(#100) Param audio['caption'] is not allowed")
        if caption is not None and len(str(caption)) > CAPTION_LENGTH:
            return Reply.graph_error(400, 100, "(#100) Param caption must be at most 1024 "
                                     "characters long")  # fmt: skip
        return None

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args) -> None:  # noqa: A002 - stdlib signature
                pass

            def do_GET(self) -> None:
                """The business phone number (GET /<version>/<phone number id>): a cheap call
                that checks the token. Without a bearer token, the Graph API's 401 (190)."""
                parts = self.path.split("?", 1)[0].strip("/").split("/")
                if len(parts) != 2 or parts[0] != VERSION:
                    fake.respond(self, Reply.graph_error(400, 100, "Unknown path components"))
                    return
                authorization = self.headers.get("Authorization", "")
                call = Call(parts[1], authorization, "", {}, time.time())
                token = authorization.removeprefix("Bearer ").strip()
                if not authorization.startswith("Bearer ") or not token:
                    reply = Reply.graph_error(401, 190, "Invalid OAuth access token.")
                else:
                    reply = fake._next_scripted(Reply())
                fake.respond(self, reply, call, success=lambda: {
                    "id": parts[1], "verified_name": "Test Clinic",
                    "display_phone_number": "+1 555 0100", "quality_rating": "GREEN"})  # fmt: skip

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = self.path.strip("/").split("/")
                if len(parts) == 3 and parts[0] == VERSION and parts[2] == "media":
                    self._upload(parts[1], raw)
                    return
                if len(parts) != 3 or parts[0] != VERSION or parts[2] != "messages":
                    fake.respond(self, Reply.graph_error(400, 100, "Unknown path components"))
                    return
                call = Call(parts[1], self.headers.get("Authorization", ""),
                            self.headers.get("Content-Type", ""),
                            json.loads(raw or b"{}"), time.time())  # fmt: skip
                refused = fake._message_reply(call.params)
                fake.respond(self, refused or fake._next_scripted(Reply()), call,
                             success=lambda: fake._success(call.params))  # fmt: skip

            def _upload(self, phone_number_id: str, raw: bytes) -> None:
                content_type = self.headers.get("Content-Type", "")
                fields, files = parse_multipart(content_type, raw)
                call = Call(phone_number_id, self.headers.get("Authorization", ""),
                            content_type, fields, time.time(), file=files.get("file"),
                            endpoint="media")  # fmt: skip
                refused = fake._upload_reply(fields, files)
                fake.respond(self, refused or Reply(), call,
                             success=lambda: {"id": fake._store_media(call.file)})  # fmt: skip

        return Handler
