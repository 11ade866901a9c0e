"""Secret values aiorch has handled in this process, and a function that hides them.

Every place that resolves a secret (a provider's API key, a step's secrets, an MCP
server's secret environment) registers its value, so text that leaves the process
(problem reports, artifacts, events) can be redacted even when a library quoted the
secret somewhere unexpected.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

MASK = "********"
# Very short values would mask ordinary words; real secrets are longer.
MINIMUM_LENGTH = 6

_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Remember ``value`` as a secret for :func:`redact`."""
    if value and len(value) >= MINIMUM_LENGTH:
        with _lock:
            _secrets.add(value)


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each of ``secrets`` replaced by asterisks, the longest first.

    Longest first, so a secret that contains another is hidden whole.
    """
    for secret in sorted({value for value in secrets if value}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by asterisks."""
    with _lock:
        known = list(_secrets)
    return mask(text, known)
