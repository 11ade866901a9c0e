"""A Unix socket relaying to another (the Docker engine's), which a test can cut.

Real bytes to the real engine: a test points a client at the relay, cuts it to make the
engine vanish mid-life (as a restarted dockerd does), and restores it.

Example:
    ```python
    from pathlib import Path

    from tests.socket_relay import SocketRelay

    with SocketRelay(Path("/tmp/relay.sock"), "/var/run/docker.sock") as relay:
        relay.cut()
        relay.restore()
    ```
"""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path
from types import TracebackType

CHUNK = 65536


class SocketRelay:
    """Listens on ``path`` and copies bytes both ways to ``target`` per connection."""

    def __init__(self, path: Path, target: str) -> None:
        self.path = path
        self.target = target
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def __enter__(self) -> SocketRelay:
        self.restore()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.cut()

    def restore(self) -> None:
        """Start listening (again)."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Stop listening, drop every relayed connection and remove the socket file."""
        with self._lock:
            sockets, self._open = self._open, []
            if self._listener is not None:
                sockets.append(self._listener)
            self._listener = None
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.path.unlink(missing_ok=True)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.target)
            with self._lock:
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(CHUNK):
            sink.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
