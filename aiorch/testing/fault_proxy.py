"""A model endpoint that fails on purpose: a real HTTP proxy injecting provider faults.

Requests are answered in order from a plan of faults (a status such as 429 or 500,
after an optional delay, or a hang); once the plan is used up they go to the upstream
server (a real model, e.g. the bundled local one), or fail with the default fault when
there is none. Every request is recorded, so a test or demo can count what reached the
model. Point a ``ModelProvider(kind="generic", base_url=proxy.base_url)`` at it.

Example:
    ```python
    from aiorch.testing.fault_proxy import Fault, running_fault_proxy

    with running_fault_proxy(default=Fault(status=429)) as proxy:
        print(proxy.base_url.startswith("http://127.0.0.1:"))  # True
    ```
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from aiorch.testing.json_http import send_json


@dataclass(frozen=True)
class Fault:
    """One injected answer: an HTTP status with an error body (after ``delay``), or a hang."""

    status: int = 500
    message: str = "injected failure"
    hang: bool = False
    delay: float = 0.0
    # As some OpenAI-compatible proxies do in a 401: quote the bearer key it was sent.
    echo_key: bool = False


@dataclass
class FaultProxy:
    """State shared with the handler: the plan, what was received, where to forward."""

    upstream: str | None
    default: Fault = field(default_factory=Fault)
    plan: list[Fault] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    forwarded: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    # Cleared, requests to forward wait here: a test holds one in flight with it.
    forward_gate: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    base_url: str = ""

    def next_fault(self, body: dict[str, Any]) -> Fault | None:
        """Record a request; the fault to answer it with, or None to forward it."""
        with self.lock:
            self.received.append(body)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            if self.plan:
                return self.plan.pop(0)
            if self.upstream is None:
                return self.default
            self.forwarded += 1
            return None


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._relay("GET", b"")

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                body = {}
            fault = proxy.next_fault({"path": self.path, **body})
            try:
                if fault is None:
                    proxy.forward_gate.wait(timeout=120)
                    self._relay("POST", raw)
                elif fault.hang:
                    proxy.release.wait(timeout=120)
                else:
                    # Simulates a slow provider; it ends early when the proxy shuts down.
                    proxy.release.wait(timeout=fault.delay)
                    message = fault.message
                    if fault.echo_key:
                        key = self.headers.get("Authorization", "").removeprefix("Bearer ")
                        message = f"{message}: Incorrect API key provided: {key}"
                    send_json(self, fault.status, {"error": {"message": message, "type": "x"}})
            finally:
                with proxy.lock:
                    proxy.in_flight -= 1

        def _relay(self, method: str, raw: bytes) -> None:
            if proxy.upstream is None:
                send_json(self, 404, {"error": {"message": "no upstream"}})
                return
            root = proxy.upstream.removesuffix("/v1")
            response = httpx.request(
                method,
                f"{root}{self.path}",
                content=raw,
                headers={"Content-Type": "application/json"},
                timeout=120,
            )
            self.send_response(response.status_code)
            self.send_header("Content-Type", response.headers.get("content-type", "text/plain"))
            self.send_header("Content-Length", str(len(response.content)))
            self.end_headers()
            self.wfile.write(response.content)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test reads ``received`` instead."""

    return Handler


@contextmanager
def running_fault_proxy(
    upstream: str | None = None, default: Fault | None = None
) -> Iterator[FaultProxy]:
    """Serve a fault proxy on 127.0.0.1; ``proxy.base_url`` is its OpenAI-style base URL."""
    proxy = FaultProxy(upstream=upstream, default=default or Fault())
    proxy.forward_gate.set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    proxy.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield proxy
    finally:
        proxy.release.set()
        proxy.forward_gate.set()
        server.shutdown()
        server.server_close()
