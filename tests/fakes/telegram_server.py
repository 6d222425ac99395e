"""A fake Telegram Bot API server on 127.0.0.1, for tests and their worker processes.

It records every sendMessage it receives and answers from a script: by default
{"ok": true}; scripted answers (429 with retry_after, 403, 400, 5xx, slow, dropped
connection) are used up first, globally or for one chat.

Modes for the chaos tests (off by default, set with the constructor or configure()):
- global_per_second / per_chat_per_second: enforce Telegram's limits as a sliding
  one-second window over accepted sends, answering 429 with retry_after when exceeded;
- failure_rate: answer 5xx to that share of calls, at random (seeded);
- delay: answer after that many seconds, or a random time in a (low, high) range;
- outage(status): answer every call with that 5xx status until outage(None).
Scripted answers always come first, after the checks Telegram makes of every message
(telegram_html.py): HTML it cannot parse, an empty text or more than 4096 characters get
its 400 whatever the script says.

sendPhoto, sendVoice and sendDocument take multipart/form-data uploads and count like
sendMessage (the script, the per-chat limits, 429s), after Telegram's checks of the
upload (Bot API, sendPhoto and "Sending files"): a caption over 1,024 characters after
entity parsing; a photo over 10 MB, one Pillow cannot open, or with width + height over
10,000 or sides over 20:1; a voice note that is not OGG, MP3 or M4A; any upload over
50 MB (413, as Telegram's front end answers). The descriptions of these refusals are
Telegram's where known ("message caption is too long"), else close to them.

keep_alive=True answers in HTTP/1.1 and keeps each connection open for the next call, as
Telegram does (the benchmarks use it). Off by default: a test's in-process client could
otherwise reuse a connection to an earlier test's stopped fake.
"""

import html
import io
import json
import math
import random
import re
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from PIL import Image

from tests.fakes.base import parse_multipart
from tests.fakes.telegram_html import refusal

MB = 1024 * 1024
SEND_METHODS = frozenset({"sendMessage", "sendPhoto", "sendVoice", "sendDocument"})
MEDIA_FIELDS = {"sendPhoto": "photo", "sendVoice": "voice", "sendDocument": "document"}
CAPTION_LENGTH = 1024
PHOTO_MAX_BYTES = 10 * MB
UPLOAD_MAX_BYTES = 50 * MB


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: dict | None = None
    delay: float = 0.0
    drop: bool = False

    @classmethod
    def too_many_requests(cls, retry_after: int) -> "Reply":
        return cls(429, {"ok": False, "error_code": 429,
                         "description": f"Too Many Requests: retry after {retry_after}",
                         "parameters": {"retry_after": retry_after}})  # fmt: skip

    @classmethod
    def blocked(cls) -> "Reply":
        return cls(403, {"ok": False, "error_code": 403,
                         "description": "Forbidden: bot was blocked by the user"})  # fmt: skip

    @classmethod
    def chat_not_found(cls) -> "Reply":
        return cls(400, {"ok": False, "error_code": 400,
                         "description": "Bad Request: chat not found"})  # fmt: skip

    @classmethod
    def server_error(cls, status: int = 500) -> "Reply":
        return cls(status, {"ok": False, "error_code": status,
                            "description": "Internal Server Error"})  # fmt: skip

    @classmethod
    def slow(cls, seconds: float) -> "Reply":
        return cls(delay=seconds)

    @classmethod
    def dropped(cls) -> "Reply":
        return cls(drop=True)


@dataclass
class Call:
    token: str
    method: str
    params: dict
    at: float
    status: int = 0
    limited: str = ""  # "global" or "chat" when the enforcement mode answered 429
    files: dict = field(default_factory=dict)  # field name: base.UploadedFile


@dataclass
class _Modes:
    global_per_second: int | None = None
    per_chat_per_second: int | None = None
    failure_rate: float = 0.0
    failure_status: int = 502
    delay: tuple[float, float] = (0.0, 0.0)
    outage_status: int | None = None


@dataclass
class _State:
    calls: list[Call] = field(default_factory=list)
    script: deque = field(default_factory=deque)
    per_chat: dict[str, deque] = field(default_factory=dict)
    next_message_id: int = 1
    # Arrival times of accepted sends inside the last second, for the enforcement mode.
    window: deque = field(default_factory=deque)
    chat_windows: dict[str, deque] = field(default_factory=dict)
    in_flight: int = 0
    most_in_flight: int = 0
    # The bot's side (getUpdates, setWebhook): updates waiting for a poller, the webhook.
    updates: deque = field(default_factory=deque)
    next_update_id: int = 1000
    updates_ready: threading.Condition = field(default_factory=threading.Condition)
    webhook: dict = field(default_factory=dict)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Dozens of worker processes connect at once in the chaos tests; the default backlog
    # of 5 would drop their connection attempts and turn into client timeouts.
    request_queue_size = 128

    def handle_error(self, request, client_address) -> None:
        # A worker stopped or killed while its kept-alive connection was open: not an
        # error of the fake's, and a traceback per connection would bury the output.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeTelegram:
    def __init__(
        self,
        *,
        global_per_second: int | None = None,
        per_chat_per_second: int | None = None,
        failure_rate: float = 0.0,
        delay: float | tuple[float, float] = 0.0,
        seed: int | None = None,
        keep_alive: bool = False,
        bot_token: str | None = None,
    ) -> None:
        self._keep_alive = keep_alive
        # When given, any other token gets Telegram's 401 "Unauthorized", for every method.
        self.bot_token = bot_token
        self._lock = threading.Lock()
        self._state = _State()
        self._modes = _Modes()
        self._random = random.Random(seed)
        self.configure(
            global_per_second=global_per_second,
            per_chat_per_second=per_chat_per_second,
            failure_rate=failure_rate,
            delay=delay,
        )
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeTelegram":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    _UNSET = object()

    def configure(
        self,
        *,
        global_per_second=_UNSET,
        per_chat_per_second=_UNSET,
        failure_rate=_UNSET,
        failure_status=_UNSET,
        delay=_UNSET,
    ) -> "FakeTelegram":
        """Changes the modes (the arguments given); takes effect for the next call."""
        with self._lock:
            modes = self._modes
            if global_per_second is not self._UNSET:
                modes.global_per_second = global_per_second
            if per_chat_per_second is not self._UNSET:
                modes.per_chat_per_second = per_chat_per_second
            if failure_rate is not self._UNSET:
                if not 0.0 <= failure_rate <= 1.0:
                    raise ValueError("failure_rate is a share between 0 and 1")
                modes.failure_rate = failure_rate
            if failure_status is not self._UNSET:
                modes.failure_status = failure_status
            if delay is not self._UNSET:
                low, high = delay if isinstance(delay, tuple) else (delay, delay)
                modes.delay = (float(low), float(high))
        return self

    def outage(self, status: int | None = 503) -> None:
        """Answer every sendMessage with `status` (a 5xx) from now on; None ends it."""
        with self._lock:
            self._modes.outage_status = status

    @property
    def in_flight(self) -> int:
        """sendMessage calls received and not answered yet (a slow answer in progress)."""
        with self._lock:
            return self._state.in_flight

    @property
    def most_in_flight(self) -> int:
        """The most sendMessage calls ever waiting for their answers at the same time."""
        with self._lock:
            return self._state.most_in_flight

    def answered(self, status: int) -> list[Call]:
        """Sends (sendMessage, sendPhoto, ...) answered with this HTTP status."""
        with self._lock:
            return [c for c in self._state.calls if c.method in SEND_METHODS and c.status == status]

    def push(self, *replies: Reply, chat_id: str | None = None) -> None:
        """Queue answers for the next sendMessage calls (to one chat, or to any)."""
        with self._lock:
            if chat_id is None:
                self._state.script.extend(replies)
            else:
                self._state.per_chat.setdefault(str(chat_id), deque()).extend(replies)

    def sent(self, chat_id: str | None = None) -> list[Call]:
        """Sends (sendMessage, sendPhoto, ...) that were answered with success, in order."""
        with self._lock:
            return [
                c for c in self._state.calls
                if c.method in SEND_METHODS and c.status == 200
                and (chat_id is None or c.params.get("chat_id") == str(chat_id))
            ]  # fmt: skip

    def calls(self, method: str = "sendMessage") -> list[Call]:
        with self._lock:
            return [c for c in self._state.calls if c.method == method]

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return predicate()

    def _next_reply(self, chat_id: str, call: Call) -> Reply:
        with self._lock:
            queue = self._state.per_chat.get(chat_id)
            if queue:
                return queue.popleft()
            if self._state.script:
                return self._state.script.popleft()
            return self._reply_from_modes(chat_id, call)

    def _reply_from_modes(self, chat_id: str, call: Call) -> Reply:
        """Called with the lock held."""
        modes = self._modes
        low, high = modes.delay
        delay = self._random.uniform(low, high) if high > low else low
        if modes.outage_status is not None:
            return Reply.server_error(modes.outage_status)
        if modes.failure_rate and self._random.random() < modes.failure_rate:
            return replace(Reply.server_error(modes.failure_status), delay=delay)
        limited = self._over_limit(chat_id, call.at)
        if limited is not None:
            kind, retry_after = limited
            call.limited = kind
            return Reply.too_many_requests(retry_after)
        return Reply(delay=delay)

    def _over_limit(self, chat_id: str, now: float) -> tuple[str, int] | None:
        """Counts an accepted send against the windows, or says which limit it breaks
        and when to come back (whole seconds, as Telegram answers). Lock held."""
        modes = self._modes
        checks = []
        if modes.global_per_second:
            checks.append(("global", self._state.window, modes.global_per_second))
        if modes.per_chat_per_second:
            window = self._state.chat_windows.setdefault(chat_id, deque())
            checks.append(("chat", window, modes.per_chat_per_second))
        for kind, window, limit in checks:
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) >= limit:
                return kind, max(1, math.ceil(window[0] + 1.0 - now))
        for _, window, _ in checks:
            window.append(now)
        return None

    def _record(self, call: Call) -> None:
        with self._lock:
            self._state.calls.append(call)

    def _count_in_flight(self, change: int) -> None:
        with self._lock:
            self._state.in_flight += change
            self._state.most_in_flight = max(self._state.most_in_flight, self._state.in_flight)

    def _new_message_id(self) -> int:
        with self._lock:
            self._state.next_message_id += 1
            return self._state.next_message_id

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if fake._keep_alive else "HTTP/1.0"
            # The status line and headers go out in one write, the body in another: with
            # Nagle's algorithm on a kept-alive connection the body then waits for the
            # client's delayed ACK, 40 ms per call. Telegram answers in one segment.
            disable_nagle_algorithm = True

            def log_message(self, format, *args) -> None:  # noqa: A002 - stdlib signature
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                content_type = self.headers.get("Content-Type", "")
                files = {}
                # Over the upload limit: refused by its size, as Telegram's front end does,
                # before any parsing (media_refusal answers 413).
                too_big = length > UPLOAD_MAX_BYTES
                body = _drained(self.rfile, length) if too_big else self.rfile.read(length)
                if too_big:
                    params = {}
                elif content_type.startswith("application/json"):
                    params = json.loads(body.decode() or "{}")
                elif content_type.startswith("multipart/form-data"):
                    params, files = parse_multipart(content_type, body)
                else:
                    params = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                _, bot_token, method = self.path.split("/", 2)
                call = Call(bot_token.removeprefix("bot"), method, params, time.time(),
                            files=files)  # fmt: skip
                refused = None
                if fake.bot_token is not None and call.token != fake.bot_token:
                    refused = Reply(
                        401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
                    )
                elif method == "sendMessage":
                    refused = refusal(str(params.get("text", "")), params.get("parse_mode"))
                elif method in MEDIA_FIELDS:
                    refused = media_refusal(method, params, files, length)
                if isinstance(refused, Reply):
                    reply = refused
                elif refused:
                    reply = Reply(400, {"ok": False, "error_code": 400, "description": refused})
                elif method in SEND_METHODS:
                    reply = fake._next_reply(str(params.get("chat_id")), call)
                elif method in BOT_METHODS:
                    reply = fake._bot_method_reply(method, params)
                elif method == "getMe":
                    reply = Reply(
                        body={
                            "ok": True,
                            "result": {
                                "id": 42,
                                "is_bot": True,
                                "first_name": "Fake",
                                "username": "fake_bot",
                            },
                        }
                    )
                else:
                    reply = Reply(404, {"ok": False, "error_code": 404, "description": "Not Found"})
                if reply.delay:
                    fake._count_in_flight(+1)
                    try:
                        time.sleep(reply.delay)
                    finally:
                        fake._count_in_flight(-1)
                if reply.drop:
                    call.status = -1
                    fake._record(call)
                    self.close_connection = True
                    self.connection.close()
                    return
                body = reply.body
                if body is None:
                    body = {"ok": True, "result": {
                        "message_id": fake._new_message_id(), "date": int(time.time()),
                        "chat": {"id": int(params.get("chat_id", 0)), "type": "private"},
                        "text": params.get("text", "")}}  # fmt: skip
                    if method in MEDIA_FIELDS:
                        body["result"].pop("text")
                        body["result"]["caption"] = params.get("caption", "")
                call.status = reply.status
                fake._record(call)
                payload = json.dumps(body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    # The client is gone (a killed worker); the send was accepted all the
                    # same, as Telegram's would be, and is already recorded.
                    self.close_connection = True

        return Handler

    # -- The bot's side: updates for getUpdates, and the methods a bot's handlers call --

    def push_update(self, update: dict) -> dict:
        """Queue an update for getUpdates; an update_id is given when it has none."""
        state = self._state
        with state.updates_ready:
            if "update_id" not in update:
                state.next_update_id += 1
                update = {"update_id": state.next_update_id, **update}
            state.updates.append(update)
            state.updates_ready.notify_all()
        return update

    def pending_updates(self) -> list[dict]:
        """Updates no getUpdates call has confirmed yet (by asking for a later offset)."""
        with self._state.updates_ready:
            return list(self._state.updates)

    @property
    def webhook(self) -> dict:
        """What the last setWebhook asked for ({} after deleteWebhook)."""
        with self._lock:
            return dict(self._state.webhook)

    def _bot_method_reply(self, method: str, params: dict) -> Reply:
        if method == "getUpdates":
            return Reply(body={"ok": True, "result": self._get_updates(params)})
        if method == "setWebhook":
            with self._lock:
                self._state.webhook = dict(params)
        elif method == "deleteWebhook":
            with self._lock:
                self._state.webhook = {}
        elif method == "getWebhookInfo":
            info = {"url": self.webhook.get("url", ""), "has_custom_certificate": False,
                    "pending_update_count": 0}  # fmt: skip
            return Reply(body={"ok": True, "result": info})
        elif method == "editMessageText":
            return Reply(body={"ok": True, "result": {
                "message_id": int(params.get("message_id", 0)), "date": int(time.time()),
                "chat": {"id": int(params.get("chat_id", 0)), "type": "private"},
                "text": params.get("text", "")}})  # fmt: skip
        return Reply(body={"ok": True, "result": True})

    def _get_updates(self, params: dict) -> list[dict]:
        """Long polling as Telegram does it: updates below `offset` are confirmed and
        dropped; with none waiting, the call is held open up to `timeout` seconds."""
        state = self._state
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        deadline = time.monotonic() + min(float(params.get("timeout") or 0), 30.0)
        with state.updates_ready:
            while True:
                while state.updates and state.updates[0]["update_id"] < offset:
                    state.updates.popleft()
                if state.updates or time.monotonic() >= deadline:
                    return list(state.updates)[:limit]
                state.updates_ready.wait(timeout=max(0.0, deadline - time.monotonic()))


def _drained(stream, length: int) -> bytes:
    """Reads and drops a body, so that the answer reaches a client still sending it."""
    while length > 0:
        chunk = stream.read(min(length, 1 << 20))
        if not chunk:
            break
        length -= len(chunk)
    return b""


def media_refusal(method: str, params: dict, files: dict, length: int) -> "str | Reply | None":
    """Telegram's answer to an upload it refuses, or None."""
    if length > UPLOAD_MAX_BYTES:
        return Reply(413, {"ok": False, "error_code": 413,
                           "description": "Request Entity Too Large"})  # fmt: skip
    upload = files.get(MEDIA_FIELDS[method])
    if upload is None:
        return f"Bad Request: there is no {MEDIA_FIELDS[method]} in the request"
    caption = str(params.get("caption", ""))
    if caption:
        problem = refusal(caption, params.get("parse_mode"))
        if problem and "too long" not in problem:
            return problem
        if _visible_length(caption, params.get("parse_mode")) > CAPTION_LENGTH:
            return "Bad Request: message caption is too long"
    if method == "sendPhoto":
        return _photo_refusal(upload.data)
    if method == "sendVoice" and not _is_voice(upload.data):
        return "Bad Request: wrong type of the voice file: OGG/OPUS, MP3 or M4A expected"
    return None


def _visible_length(text: str, parse_mode: str | None) -> int:
    if not parse_mode:
        return len(text)
    return len(html.unescape(re.sub(r"<[^>]*>", "", text)))


def _photo_refusal(data: bytes) -> str | None:
    if len(data) > PHOTO_MAX_BYTES:
        return "Bad Request: file is too big"
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            width, height = image.size
    except Exception:  # noqa: BLE001 - any failure to read is Telegram's refusal
        return "Bad Request: IMAGE_PROCESS_FAILED"
    if width + height > 10_000 or max(width, height) > 20 * min(width, height):
        return "Bad Request: PHOTO_INVALID_DIMENSIONS"
    return None


def _is_voice(data: bytes) -> bool:
    mp3 = data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0)
    return data[:4] == b"OggS" or mp3 or data[4:8] == b"ftyp"


BOT_METHODS = frozenset({"getUpdates", "setWebhook", "deleteWebhook", "getWebhookInfo",
                         "answerCallbackQuery", "editMessageText", "editMessageReplyMarkup",
                         "setMyCommands"})  # fmt: skip


# -- Updates as the Bot API sends them (to a webhook, or from getUpdates) -----------------


def _user(chat_id: int, language_code: str) -> dict:
    return {"id": chat_id, "is_bot": False, "first_name": "Pat", "language_code": language_code}


def message_update(chat_id: int | str, text: str, *, update_id: int | None = None,
                   message_id: int = 1, language_code: str = "en",
                   chat_type: str = "private") -> dict:  # fmt: skip
    """A text message from a user in a private chat (chat id = user id there)."""
    chat_id = int(chat_id)
    message = {
        "message_id": message_id,
        "date": int(time.time()),
        "from": _user(chat_id, language_code),
        "chat": {"id": chat_id, "type": chat_type, "first_name": "Pat"},
        "text": text,
    }
    if text.startswith("/"):
        command = text.split()[0]
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
    update = {"message": message}
    return {"update_id": update_id, **update} if update_id is not None else update


def callback_update(chat_id: int | str, data: str, *, message_text: str, message_id: int = 7,
                    update_id: int | None = None, language_code: str = "en") -> dict:  # fmt: skip
    """A press on an inline button under one of the bot's messages."""
    chat_id = int(chat_id)
    update = {"callback_query": {
        "id": f"cb{chat_id}{message_id}", "from": _user(chat_id, language_code),
        "chat_instance": "42", "data": data,
        "message": {"message_id": message_id, "date": int(time.time()),
                    "from": {"id": 42, "is_bot": True, "first_name": "Fake",
                             "username": "fake_bot"},
                    "chat": {"id": chat_id, "type": "private", "first_name": "Pat"},
                    "text": message_text}}}  # fmt: skip
    return {"update_id": update_id, **update} if update_id is not None else update
