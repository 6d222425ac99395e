"""A fake OpenAI-compatible Chat Completions server on 127.0.0.1, for tests.

POST /v1/chat/completions as OpenAI (and Ollama, vLLM, llama.cpp) answer it: a bearer
token is required, the body must have a model and a list of messages with a role and a
content, or it answers 400 like OpenAI. By default it answers `text`; a script or modes
make it slow, fail (500, 429 with OpenAI's error body), answer garbage (not JSON, or JSON
without choices), an empty text, an over-long one, or one cut off by max_tokens.
Every call is recorded with the request body, so a test can see what left.
"""

import json
import select
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler

from tests.fakes.base import BaseReply, FakeServer

API_KEY = "sk-test-key"


@dataclass(frozen=True)
class Reply(BaseReply):
    text: str | None = None
    finish_reason: str = "stop"

    @classmethod
    def error(cls, status: int, message: str = "upstream error", kind: str = "server_error"):
        return cls(status, {"error": {"message": message, "type": kind, "code": None}})

    @classmethod
    def rate_limited(cls):
        return cls(
            429,
            {
                "error": {
                    "message": "Rate limit reached",
                    "type": "requests",
                    "code": "rate_limit_exceeded",
                }
            },
            headers={"retry-after": "20"},
        )

    @classmethod
    def garbage(cls):
        return cls(200, raw=b"<html>this is not the API</html>")

    @classmethod
    def without_choices(cls):
        return cls(200, {"id": "x", "object": "chat.completion", "choices": []})


@dataclass
class Call:
    path: str
    body: dict
    authorization: str
    at: float = field(default_factory=time.monotonic)
    status: int = 0


class FakeLLM(FakeServer):
    def __init__(self, text: str = "Good morning! How are you feeling today?") -> None:
        self.text = text
        self.delay = 0.0
        self.in_flight = self.most_in_flight = 0
        self._flight = threading.Lock()
        super().__init__()

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def _count(self, change: int) -> None:
        with self._flight:
            self.in_flight += change
            self.most_in_flight = max(self.most_in_flight, self.in_flight)

    def _answer(self, call: Call, reply: Reply) -> dict:
        text = self.text if reply.text is None else reply.text
        return {
            "id": f"chatcmpl-{len(self.calls())}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": call.body.get("model", ""),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": {"prompt_tokens": 42, "completion_tokens": 17, "total_tokens": 59},
        }

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = None
                call = Call(
                    self.path,
                    body if isinstance(body, dict) else {},
                    self.headers.get("Authorization", ""),
                )
                if self.path != "/v1/chat/completions":
                    fake.respond(self, Reply.error(404, "not found", "invalid_request_error"), call)
                    return
                if call.authorization != f"Bearer {API_KEY}":
                    fake.respond(
                        self,
                        Reply.error(401, "Incorrect API key provided", "invalid_request_error"),
                        call,
                    )
                    return
                messages = call.body.get("messages")
                if (
                    not isinstance(call.body.get("model"), str)
                    or not isinstance(messages, list)
                    or not all(
                        isinstance(m, dict) and m.get("role") and isinstance(m.get("content"), str)
                        for m in messages
                    )
                ):
                    fake.respond(
                        self, Reply.error(400, "invalid request", "invalid_request_error"), call
                    )
                    return
                reply = fake._next_scripted(Reply(delay=fake.delay))
                fake._count(+1)
                try:
                    # A model server stops working on a request its client gave up on
                    # (vLLM and Ollama do): it no longer counts as open.
                    if not self._wait_while_connected(reply.delay):
                        call.status = -2
                        fake._record(call)
                        self.close_connection = True
                        return
                finally:
                    fake._count(-1)
                reply = replace(reply, delay=0.0)
                fake.respond(self, reply, call, success=lambda: fake._answer(call, reply))

            def _wait_while_connected(self, seconds: float) -> bool:
                deadline = time.monotonic() + seconds
                while (left := deadline - time.monotonic()) > 0:
                    readable, _, _ = select.select([self.connection], [], [], min(left, 0.05))
                    if readable and not self.connection.recv(1, socket.MSG_PEEK):
                        return False
                return True

        return Handler
