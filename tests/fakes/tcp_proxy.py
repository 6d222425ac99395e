"""A TCP proxy on 127.0.0.1 that a test can cut, to take a server away from its clients.

Used in front of PostgreSQL: worker processes connect through it, and `cut()` closes
every live connection and refuses new ones (each is reset at once) until `restore()`,
which is what clients see when the database restarts or the network drops.
"""

import contextlib
import socket
import struct
import threading

_BUFFER = 65536


def _reset(sock: socket.socket) -> None:
    """Close with an RST, so the peer gets an error at once instead of waiting."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    _close(sock)


def _close(sock: socket.socket) -> None:
    # shutdown() wakes a thread blocked in recv() on this socket; close() alone may not.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class TcpProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        # accept() wakes up this often to notice stop().
        self._listener.settimeout(0.2)
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._is_cut = False
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.connections = 0  # forwarded, in all
        self.refused = 0  # reset while cut
        self.severed = 0  # live connections closed by cut()

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1]

    def start(self) -> "TcpProxy":
        self._thread.start()
        return self

    def cut(self) -> int:
        """Closes every live connection and refuses new ones; returns how many were closed."""
        closed = self._close_all()
        self.severed += closed
        return closed

    def restore(self) -> None:
        with self._lock:
            self._is_cut = False

    def stop(self) -> None:
        self._stopped.set()
        self._close_all()
        self._thread.join(timeout=5)
        self._listener.close()

    def _close_all(self) -> int:
        with self._lock:
            self._is_cut = True
            pairs, self._pairs = self._pairs, set()
        for client, upstream in pairs:
            _reset(client)
            _reset(upstream)
        return len(pairs)

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                refuse = self._is_cut
                if refuse:
                    self.refused += 1
            if refuse:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            pair = (client, upstream)
            with self._lock:
                if self._is_cut:  # cut() ran while we were connecting
                    _reset(client)
                    _reset(upstream)
                    continue
                self._pairs.add(pair)
                self.connections += 1
            for source, sink in (pair, pair[::-1]):
                threading.Thread(target=self._pump, args=(source, sink, pair), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, pair) -> None:
        try:
            while data := source.recv(_BUFFER):
                sink.sendall(data)
        except OSError:
            pass
        # One side finished or failed: end the pair, as a real connection would end.
        with self._lock:
            live = pair in self._pairs
            self._pairs.discard(pair)
        if live:
            _close(source)
            _close(sink)
