"""A fake Telegram Bot API server on 127.0.0.1, for tests and their worker processes.

It records every sendMessage it receives and answers from a script: by default
{"ok": true}; scripted answers (429 with retry_after, 403, 400, 5xx, slow, dropped
connection) are used up first, globally or for one chat.
"""

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


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


@dataclass
class _State:
    calls: list[Call] = field(default_factory=list)
    script: deque = field(default_factory=deque)
    per_chat: dict[str, deque] = field(default_factory=dict)
    next_message_id: int = 1


class FakeTelegram:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = _State()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
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

    def push(self, *replies: Reply, chat_id: str | None = None) -> None:
        """Queue answers for the next sendMessage calls (to one chat, or to any)."""
        with self._lock:
            if chat_id is None:
                self._state.script.extend(replies)
            else:
                self._state.per_chat.setdefault(str(chat_id), deque()).extend(replies)

    def sent(self, chat_id: str | None = None) -> list[Call]:
        """sendMessage calls that were answered with success."""
        with self._lock:
            return [
                c for c in self._state.calls
                if c.method == "sendMessage" and c.status == 200
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

    def _next_reply(self, chat_id: str) -> Reply:
        with self._lock:
            queue = self._state.per_chat.get(chat_id)
            if queue:
                return queue.popleft()
            if self._state.script:
                return self._state.script.popleft()
            return Reply()

    def _record(self, call: Call) -> None:
        with self._lock:
            self._state.calls.append(call)

    def _new_message_id(self) -> int:
        with self._lock:
            self._state.next_message_id += 1
            return self._state.next_message_id

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args) -> None:  # noqa: A002 - stdlib signature
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    params = json.loads(raw or "{}")
                else:
                    params = {k: v[0] for k, v in parse_qs(raw).items()}
                _, bot_token, method = self.path.split("/", 2)
                call = Call(bot_token.removeprefix("bot"), method, params, time.time())
                if method == "sendMessage":
                    reply = fake._next_reply(str(params.get("chat_id")))
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
                    time.sleep(reply.delay)
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
                call.status = reply.status
                fake._record(call)
                payload = json.dumps(body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
