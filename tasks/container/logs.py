"""Forward a step's output line by line to the Prefect run logger, keeping the tails.

Known secret values are masked before a line reaches any logger or tail: a command that
echoes its token must not put it into Prefect's logs.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable
from typing import Literal

from aiorch.core.redaction import mask

Stream = Literal["stdout", "stderr"]


class StepOutput:
    """Receives output chunks from a runner; thread-safe, since runners read in threads."""

    def __init__(
        self,
        step: str,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
        secrets: Iterable[str] = (),
        tail_lines: int = 50,
    ) -> None:
        self._step = step
        self._logger = logger
        self._secrets = tuple(value for value in secrets if value)
        self._tails: dict[Stream, deque[str]] = {
            "stdout": deque(maxlen=tail_lines),
            "stderr": deque(maxlen=tail_lines),
        }
        self._partial: dict[Stream, str] = {"stdout": "", "stderr": ""}
        self._lock = threading.Lock()

    def mask(self, text: str) -> str:
        """Replace every known secret value in ``text``."""
        return mask(text, self._secrets)

    def write(self, stream: Stream, data: bytes | str) -> None:
        """Add a chunk of output; complete lines are logged at once."""
        text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
        with self._lock:
            *lines, self._partial[stream] = (self._partial[stream] + text).split("\n")
            for line in lines:
                self._emit(stream, line)

    def info(self, message: str) -> None:
        """Log a runner message (not command output) for this step."""
        self._logger.info("[%s] %s", self._step, self.mask(message))

    def warning(self, message: str) -> None:
        """Log a runner warning for this step."""
        self._logger.warning("[%s] %s", self._step, self.mask(message))

    def flush(self) -> None:
        """Emit any unterminated last line."""
        with self._lock:
            for stream in ("stdout", "stderr"):
                if self._partial[stream]:
                    self._emit(stream, self._partial[stream])
                    self._partial[stream] = ""

    def tail(self, stream: Stream) -> str:
        """The last lines of ``stream``, already masked."""
        with self._lock:
            return "\n".join(self._tails[stream])

    def _emit(self, stream: Stream, line: str) -> None:
        line = self.mask(line.rstrip("\r"))
        self._tails[stream].append(line)
        # stderr is logged at INFO too: most tools write progress there, not problems.
        self._logger.info("[%s %s] %s", self._step, stream, line)
