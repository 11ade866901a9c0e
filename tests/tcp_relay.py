"""A TCP port relaying to another (a broker's), which a test can cut to drop connections.

Example:
    ```python
    from tests.tcp_relay import TcpRelay

    with TcpRelay(5672) as relay:
        print(relay.port)
        relay.drop()
    ```
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

from tests.socket_relay import _pump


class TcpRelay:
    """Listens on a free loopback port; copies bytes both ways to ``target_port``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]

    def __enter__(self) -> TcpRelay:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._listener.close()
        self.drop()

    def drop(self) -> None:
        """Cut every relayed connection (the listener stays: clients may reconnect)."""
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()
