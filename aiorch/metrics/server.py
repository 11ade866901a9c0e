"""Serve the exporter's ``/metrics`` over HTTP, reading what is new at each scrape.

Example:
    ```bash
    aiorch metrics serve --host 127.0.0.1 --port 9464   # PREFECT_API_URL names the server
    curl -s http://127.0.0.1:9464/metrics | grep aiorch_flow_runs
    ```
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST

from aiorch.metrics.exporter import MetricsExporter

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes come every few seconds; they are not worth a log line each."""


def metrics_app(exporter: MetricsExporter) -> WsgiApp:
    """A WSGI app: ``/metrics`` is the exposition, anything else 404."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"the metrics are at /metrics\n"]
        body = exporter.scrape()
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [body]

    return app


class MetricsServer:
    """The exporter behind an HTTP server on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, host: str, port: int, exporter: MetricsExporter | None = None) -> None:
        self.exporter = exporter or MetricsExporter()
        self._server = make_server(
            host, port, metrics_app(self.exporter), WSGIServer, handler_class=_QuietHandler
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Where Prometheus scrapes."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/metrics"

    def serve_forever(self) -> None:
        """Serve until :meth:`stop` (or the process ends)."""
        self._server.serve_forever()

    def start(self) -> MetricsServer:
        """Serve in a background thread, with the caller's Prefect settings.

        Scrapes are answered one at a time in that thread (they take the exporter's
        lock anyway), so settings made in code (a ``temporary_settings`` block) apply.
        """
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self.serve_forever,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
