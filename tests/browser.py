"""Headless Chromium driven through the DevTools protocol, for checks of the Prefect UI.

Debian's ``chromium`` runs headless with ``--remote-debugging-port``; a page is opened
through the HTTP endpoint and driven over its WebSocket (``websockets``, a Prefect
dependency): evaluate JavaScript until a condition holds (polling with a deadline, since
the UI renders asynchronously) and capture screenshots.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from websockets.sync.client import connect
from websockets.sync.connection import Connection

from aiorch.core.services import free_port, stop_process_group

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1500",
]
STARTUP_DEADLINE_SECONDS = 30.0


def chromium_path() -> str | None:
    """The Chromium executable, if installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One browser tab."""

    def __init__(self, socket: Connection) -> None:
        self._socket = socket
        self._ids = itertools.count(1)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Send a DevTools command and return its result."""
        message_id = next(self._ids)
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self._socket.recv(timeout=60))
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, deadline_seconds: float = 30.0) -> Any:
        """Poll ``expression`` until it is truthy; its value (the last one on timeout)."""
        deadline = time.monotonic() + deadline_seconds
        while True:
            value = self.evaluate(expression)
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.2)

    def screenshot(self, path: Path) -> None:
        """Save a PNG of the page."""
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))


@contextmanager
def opened(url: str) -> Iterator[Page]:
    """Start Chromium, open ``url`` in a tab, and stop it all afterwards."""
    executable = chromium_path()
    if executable is None:
        raise RuntimeError("chromium is not installed (apt-get install chromium)")
    port = free_port()
    profile = Path(tempfile.mkdtemp(prefix="aiorch-chromium-"))
    process = subprocess.Popen(
        [executable, *FLAGS, f"--remote-debugging-port={port}", f"--user-data-dir={profile}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + STARTUP_DEADLINE_SECONDS
        while True:
            try:
                httpx.get(f"{endpoint}/json/version", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("chromium did not open its DevTools port") from None
                time.sleep(0.2)
        target = httpx.put(f"{endpoint}/json/new?{quote(url, safe='')}", timeout=10).json()
        with connect(target["webSocketDebuggerUrl"], max_size=None) as socket:
            page = Page(socket)
            page.send("Page.enable")
            yield page
    finally:
        stop_process_group(process)
        shutil.rmtree(profile, ignore_errors=True)
