"""Helpers the messaging tests share: envelopes in one line, a ledger file to wait on."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from aiorch.tasks.messaging.envelope import Envelope, TextPart, parse_address


def text_message(sender: str, recipient: str, text: str = "hi", **fields: Any) -> Envelope:
    """A text envelope; an event unless ``kind`` says otherwise (always one to a topic)."""
    kind = "event" if recipient.startswith("topic:") else fields.pop("kind", "event")
    return Envelope(
        sender=parse_address(sender),
        recipient=parse_address(recipient),
        kind=kind,
        parts=[TextPart(text=text)],
        **fields,
    )


def wait_for_line(ledger: Path, line: str, deadline_seconds: float = 60) -> None:
    """Poll ``ledger`` (a worker process writes it) until it holds ``line``."""
    deadline = time.monotonic() + deadline_seconds
    while line not in (ledger.read_text() if ledger.exists() else ""):
        assert time.monotonic() < deadline, f"{line!r} never came: {ledger.read_text()!r}"
        time.sleep(0.05)
