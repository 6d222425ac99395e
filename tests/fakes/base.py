"""What the fake provider servers share: an HTTP server on 127.0.0.1 on a free port, a
lock, the calls received and a script of answers to give next."""

import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer


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

    def _handler_class(self):
        raise NotImplementedError
