"""Secret values this process has handled, and the masking that keeps them out of output.

Every place that resolves a secret (a provider's API key from its block or from the
environment variable the provider reads, a Secret block, a step's secrets, an MCP
server's secret environment) registers its value with the process's
:class:`SecretRegistry`. From then on:

- every aiorch error's message is masked as it is made (so the exception, Prefect's
  state messages and events, and result storage never hold the value);
- problem reports, artifacts and events are masked before they leave;
- every log record is masked as it is made, so a library that quotes the secret in a
  log line or a traceback (FastAgent, httpx, Prefect) is masked too.

Masking works on the value as written: a command that prints a secret transformed
(split across lines, base64) or writes it to a file cannot be masked (docs/security.md).

Example:
    ```python
    from aiorch.core.redaction import redact, register_secret

    register_secret("sk-example-123456")
    print(redact("key sk-example-123456 refused"))  # key ******** refused
    ```
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Iterable
from typing import Any, ClassVar

MASK = "********"
# Very short values would mask ordinary words; real secrets are longer.
MINIMUM_LENGTH = 6


# Prefixes of well-known credential formats (OpenAI/Anthropic/Stripe, GitHub, Slack, AWS,
# Google, Hugging Face).
_KEY_PREFIX = re.compile(
    r"^((sk|pk|rk|hf)[-_][\w-]{8,}|gh[pous]_\w{20,}|github_pat_\w{20,}|xox[abpr]-[\w-]{8,}"
    r"|AKIA[0-9A-Z]{16}|AIza[\w-]{30,})"
)
_TOKEN_CHARACTERS = re.compile(r"^[A-Za-z0-9_\-+=.]{24,}$")
_ENTROPY_BITS = 3.5
_SEPARATORS = re.compile(r"[^A-Za-z0-9_\-+=.]+")
_HEX = re.compile(r"^[0-9a-fA-F]+$")


def looks_secret(text: str) -> bool:
    """Whether ``text`` may be or hold a credential.

    It may when it holds a registered secret, a known key format, or a long
    random-looking token (letters and digits, high entropy; hex digests and ids aside),
    alone or inside a longer text such as a URL.
    """
    if SecretRegistry.shared().redact(text) != text:
        return True
    return any(_token_looks_secret(piece) for piece in _SEPARATORS.split(text))


def _token_looks_secret(token: str) -> bool:
    if _KEY_PREFIX.match(token):
        return True
    if not _TOKEN_CHARACTERS.match(token) or token.isalpha() or token.isdigit():
        return False
    if _HEX.match(token):
        return False
    counts = [token.count(character) for character in set(token)]
    entropy = -sum(count / len(token) * math.log2(count / len(token)) for count in counts)
    return entropy >= _ENTROPY_BITS


def quoted(value: object) -> str:
    """``repr(value)`` for an error message, unless it may be a secret (then a notice).

    Validators quote what was wrong so the user sees it; a key pasted into the wrong
    field must not travel into logs and events that way.
    """
    text = str(value)
    return "<hidden: it looks like a secret>" if looks_secret(text) else repr(value)


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each of ``secrets`` replaced by asterisks, the longest first.

    Longest first, so a secret that contains another is hidden whole.
    """
    for secret in sorted({value for value in secrets if value}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


class SecretRegistry:
    """The secrets one process knows; the process is its owner (:meth:`shared`)."""

    _shared: ClassVar[SecretRegistry | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._secrets: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self.records = RedactingRecords(self)

    @classmethod
    def shared(cls) -> SecretRegistry:
        """The process's registry."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def register(self, value: str | None) -> None:
        """Remember ``value`` as a secret, and mask it in every log record from now on."""
        if not value or len(value) < MINIMUM_LENGTH or value in self._secrets:
            return
        with self._lock:
            self._secrets = self._secrets | {value}
        self.records.install()

    def redact(self, text: str) -> str:
        """``text`` with every registered secret replaced by asterisks."""
        secrets = self._secrets
        return mask(text, secrets) if secrets and any(s in text for s in secrets) else text


class RedactingRecords:
    """Masks a registry's secrets in every log record as it is made.

    A log record factory rather than a filter on handlers: it also covers the handlers a
    library adds later (FastAgent's, a user's), and records logged before the handler
    that would filter them exists. Message, arguments, traceback and stack are masked.
    """

    def __init__(self, registry: SecretRegistry) -> None:
        self._registry = registry
        self._installed = False
        self._lock = threading.Lock()

    def mask(self, record: logging.LogRecord) -> None:
        """Mask ``record`` in place."""
        message = record.getMessage()
        redacted = self._registry.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._registry.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self._registry.redact(record.stack_info)

    def install(self) -> None:
        """Wrap the process's log record factory, once."""
        with self._lock:
            if self._installed:
                return
            previous = logging.getLogRecordFactory()

            def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
                record = previous(*args, **kwargs)
                self.mask(record)
                return record

            logging.setLogRecordFactory(make_record)
            self._installed = True


def register_secret(value: str | None) -> None:
    """Register ``value`` with the process's :class:`SecretRegistry`."""
    SecretRegistry.shared().register(value)


def redact(text: str) -> str:
    """``text`` with every secret this process registered replaced by asterisks."""
    return SecretRegistry.shared().redact(text)
