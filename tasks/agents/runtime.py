"""One FastAgent runtime per process, on its own event-loop thread.

FastAgent keeps process-wide state (settings, a global context, a logging event bus
bound to the first event loop it sees), so a Core per call, or Cores on several loops,
fail with "attached to a different loop". aiorch starts one Core on a dedicated thread
and hands every agent call to that loop, where long-lived resources (idle agents,
MCP sessions) are kept for reuse; Prefect tasks in any thread or loop wait for
the result, and cancelling the waiting task cancels the call. The Core is configured
for a library: no console output, no log files, no retries of its own (Prefect owns
retries).

Example:
    ```python
    from aiorch.tasks.agents.runtime import AgentRuntime

    async def ping() -> str:
        return "pong"

    print(AgentRuntime.shared().call(ping))
    ```
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, ClassVar, TypeVar, cast

from fast_agent.config import LoggerSettings, Settings
from fast_agent.core.core_app import Core

from aiorch.core.settings import load_settings
from aiorch.tasks.agents.errors import AgentError

T = TypeVar("T")
SHUTDOWN_TIMEOUT_SECONDS = 30


def library_settings() -> Settings:
    """FastAgent settings for use inside Prefect tasks.

    FastAgent keeps sessions under its home, ``./.fast-agent`` by default: that would
    litter the worker's working directory and fails where it is read-only (the flow
    image's /opt/aiorch), so it lives in aiorch's data directory.
    """
    home = load_settings().resolved_data_dir() / "fast-agent"
    return Settings(
        logger=LoggerSettings(
            type="none", show_chat=False, show_tools=False, progress_display=False
        ),
        llm_retries=0,
        home=str(home),
    )


class AgentRuntime:
    """A FastAgent Core running on a private event loop in a daemon thread."""

    _shared: ClassVar[AgentRuntime | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, settings: Settings | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="aiorch-agent-runtime", daemon=True
        )
        self._thread.start()
        self.settings = settings or library_settings()
        self._core = Core(settings=self.settings)
        self._closed = False
        self._resources: dict[str, Any] = {}
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self.call(self._core.initialize)

    @classmethod
    def shared(cls) -> AgentRuntime:
        """The process's runtime, started on first use and closed at exit."""
        with cls._shared_lock:
            if cls._shared is None or cls._shared._closed:
                cls._shared = cls()
                atexit.register(cls._shared.close)
            return cls._shared

    @property
    def core(self) -> Core:
        """The FastAgent Core (use it only from coroutines run by this runtime)."""
        return self._core

    def resource(
        self,
        name: str,
        factory: Callable[[], T],
        closer: Callable[[T], Awaitable[None]] | None = None,
    ) -> T:
        """A named object that lives as long as the runtime (call only on its loop).

        ``closer`` runs when the runtime closes, before the Core is cleaned up.
        """
        if name not in self._resources:
            created = factory()
            self._resources[name] = created
            if closer is not None:
                self._closers.append(lambda: closer(created))
        return cast(T, self._resources[name])

    async def _shutdown(self) -> None:
        for closer in reversed(self._closers):
            try:
                await closer()
            except Exception:  # one failing resource must not keep the others open
                continue
        await self._core.cleanup()

    def _submit(self, function: Callable[[], Awaitable[T]]) -> Future[T]:
        if self._closed:
            raise AgentError(
                "the agent runtime is closed (the process is shutting down); run again",
                retryable=True,
            )

        async def run() -> T:
            return await function()

        return asyncio.run_coroutine_threadsafe(run(), self._loop)

    def call(self, function: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
        """Run ``function()`` on the runtime's loop and wait for its result."""
        future = self._submit(function)
        try:
            return future.result(timeout=timeout)
        except BaseException:
            future.cancel()
            raise

    async def acall(self, function: Callable[[], Awaitable[T]]) -> T:
        """Await ``function()`` run on the runtime's loop; cancelling this cancels it."""
        future = self._submit(function)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()
            raise

    def close(self) -> None:
        """Clean up the Core and stop the loop; later calls raise."""
        if self._closed:
            return
        try:
            self.call(self._shutdown, timeout=SHUTDOWN_TIMEOUT_SECONDS)
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=SHUTDOWN_TIMEOUT_SECONDS)
