"""What the fake provider servers share: an HTTP server on 127.0.0.1 on a free port, a
lock, the calls received and a script of answers to give next."""

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class BaseReply:
    """One scripted answer: a JSON body (empty: the fake's success body), or raw bytes,
    after a delay, or a dropped connection."""

    status: int = 200
    body: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False
    raw: bytes | None = None  # sent as is instead of a JSON body

    @classmethod
    def not_json(cls, status: int = 502):
        return cls(status, raw=b"<html><body>Bad Gateway</body></html>")

    @classmethod
    def slow(cls, seconds: float):
        return cls(delay=seconds)

    @classmethod
    def dropped(cls):
        return cls(drop=True)


@dataclass
class FakeState:
    calls: list = field(default_factory=list)
    script: deque = field(default_factory=deque)
    next_id: int = 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class FakeServer:
    """Subclasses give `_handler_class()` and how a call counts as sent (`SENT_STATUS`)."""

    SENT_STATUS = 200

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = FakeState()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        # A short poll interval: stop() waits for it, once per test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def origin(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def push(self, *replies) -> None:
        """Queue answers for the next calls."""
        with self._lock:
            self._state.script.extend(replies)

    def calls(self) -> list:
        with self._lock:
            return list(self._state.calls)

    def sent(self) -> list:
        """Calls answered as a successful send."""
        return [c for c in self.calls() if c.status == self.SENT_STATUS]

    def _next_scripted(self, default: BaseReply) -> BaseReply:
        with self._lock:
            return self._state.script.popleft() if self._state.script else default

    def _record(self, call) -> None:
        with self._lock:
            self._state.calls.append(call)

    def respond(
        self,
        handler: BaseHTTPRequestHandler,
        reply: BaseReply,
        call=None,
        success=dict,
        content_type: str = "application/json",
    ) -> None:
        """Waits, drops the connection or answers as the reply says; the call, if any, is
        recorded with the status it got (-1 for a dropped connection) before the answer."""
        if reply.delay:
            time.sleep(reply.delay)
        if call is not None:
            call.status = -1 if reply.drop else reply.status
            self._record(call)
        if reply.drop:
            handler.close_connection = True
            handler.connection.close()
            return
        payload = reply.raw if reply.raw is not None else json.dumps(reply.body or success())
        payload = payload if isinstance(payload, bytes) else payload.encode()
        try:
            handler.send_response(reply.status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(payload)
        except OSError:
            # The client gave up (a timeout); the call is already recorded.
            handler.close_connection = True

    def _handler_class(self):
        raise NotImplementedError


@dataclass(frozen=True)
class UploadedFile:
    filename: str
    content_type: str
    data: bytes


def parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict]:
    """A multipart/form-data body as (text fields, files by field name), read with the
    standard library's MIME parser as a server would; a malformed body gives ({}, {})."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=default_policy).parsebytes(head + body)
    fields: dict[str, str] = {}
    files: dict[str, UploadedFile] = {}
    if not message.is_multipart():
        return fields, files
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is None:
            fields[name] = payload.decode()
        else:
            files[name] = UploadedFile(filename, part.get_content_type(), payload)
    return fields, files
