"""A fake incoming-webhook receiver on 127.0.0.1 (what Slack, Teams or a PagerDuty-style
service would be): POST / with a JSON body. Like Slack's, it refuses what is not
JSON (415 for another Content-Type, 400 for a body that does not parse or has no
"text"). Answers come from the script (push), else 200 {"ok": true}; `down` answers 503
to every call. Calls are recorded with their parsed body and the moment they came."""

import json
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from tests.fakes.base import BaseReply, FakeServer


@dataclass
class Call:
    path: str
    body: dict
    at: float = field(default_factory=time.time)
    status: int = 0


class FakeWebhook(FakeServer):
    def __init__(self) -> None:
        self.down = False
        super().__init__()

    @property
    def url(self) -> str:
        return f"{self.origin}/hooks/operators"

    def bodies(self) -> list[dict]:
        """What was accepted."""
        return [call.body for call in self.sent()]

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not self.headers.get("Content-Type", "").startswith("application/json"):
                    fake.respond(self, BaseReply(415, {"ok": False, "error": "not json"}))
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    fake.respond(self, BaseReply(400, {"ok": False, "error": "invalid_json"}))
                    return
                if not isinstance(body, dict) or not body.get("text"):
                    fake.respond(self, BaseReply(400, {"ok": False, "error": "no_text"}))
                    return
                call = Call(self.path, body)
                if fake.down:
                    fake.respond(self, BaseReply(503, {"ok": False}), call)
                    return
                fake.respond(self, fake._next_scripted(BaseReply()), call, lambda: {"ok": True})

        return Handler
