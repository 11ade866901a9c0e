"""How many container steps this process runs at once (``AIORCH_MAX_PARALLEL_STEPS``).

The bound is read from the settings each time a step asks for a slot, so a changed
setting applies to the next step (a semaphore sized once would keep the first value
for the life of the process). Waiting polls instead of blocking a worker thread: a
cancelled wait must never take a slot later.

Example:
    ```python
    from aiorch.tasks.container.slots import StepSlots

    async def run_one() -> None:
        async with StepSlots.shared().taken(limit=4):
            ...  # at most four steps of this process are here at once
    ```
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import ClassVar

import anyio

POLL_SECONDS = 0.05


class StepSlots:
    """The slots of one process's steps, shared by its threads and event loops."""

    _shared: ClassVar[StepSlots | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taken = 0

    @classmethod
    def shared(cls) -> StepSlots:
        """The slots of this process."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    @property
    def taken_now(self) -> int:
        """How many slots are held at this moment."""
        with self._lock:
            return self._taken

    def _try_take(self, limit: int) -> bool:
        with self._lock:
            if self._taken >= limit:
                return False
            self._taken += 1
            return True

    @asynccontextmanager
    async def taken(self, limit: int) -> AsyncIterator[None]:
        """Hold a slot while at most ``limit`` are held, waiting for one if needed."""
        while not self._try_take(limit):
            await anyio.sleep(POLL_SECONDS)
        try:
            yield
        finally:
            with self._lock:
                self._taken -= 1
