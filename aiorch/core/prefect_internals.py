"""Every place aiorch reaches into Prefect beyond its public API.

Each was checked against the Prefect releases in :data:`CHECKED_PREFECT`, and
tests/test_prefect_internals.py fails on any other. One reason to change: Prefect's
internals moved. Seven touches:

- **The client context of sync tasks.** A sync task that awaits async work (each model
  request, each step execution) goes through Prefect's run-sync event loop, where no
  client context exists, so every call would open a new async Prefect client: about
  17 ms here, mostly loading the TLS trust store, three times the rest of a passthrough
  agent call. :func:`run_sync` keeps one client per event loop and API URL and puts it in
  the context of each call (Prefect's ``AsyncClientContext`` variable), as an async
  flow's own client context does.
- **Storage blocks' async methods.** Prefect's own results code reads and writes storage
  blocks through ``call_explicitly_async_block_method``: it picks each block type's async
  method (LocalFileSystem, S3, GCS and Azure differ).
- **A loaded block's document id.** Prefect keeps it in a private attribute; an action
  that sends through a saved notification block needs it.
- **The cache's file lock manager.** Prefect's FileSystemLockManager (3.9) creates a
  lock file empty and writes its JSON a moment later, so a concurrent reader can fail
  with "EOF while parsing"; and when two async callers race, the loser falls back to the
  blocking ``acquire_lock``, which sleeps inside the event loop and deadlocks the winner
  that shares that loop. Identical steps started together hit both. Here a lock file is
  written under a temporary name and hard-linked into place, which creates it atomically
  with its content, and async waits use ``anyio.sleep``. A lock also records its
  holder's process, its guardian (:mod:`aiorch.core.guardian`) and host. A process
  killed while it held a lock (``kill -9``, a lost machine) never releases it, and
  Prefect's lock has no expiry unless a hold timeout is set, so a rerun would wait
  forever: a lock whose process and guardian are both gone from this host is stale (the
  guardian exits only once the holder's commands are dead) and is removed, under an
  ``flock`` so that two waiters never remove a lock a third has just taken.
- **A task outside its caller's transaction.** A task called from another task opens its
  transaction as a child of the caller's, which commits (writes) it only when the caller
  commits, and drops it if the caller rolls back. :func:`outside_transactions` hides the
  caller's transaction (Prefect's ``Transaction`` context variable), so the inner task's
  record is written as that task ends, as for a task called by a flow. The alternative,
  an eager transaction around the call, makes the caller commit the child a second time,
  and Prefect 3.9 then releases a SERIALIZABLE child's lock twice: the second release
  raises "No lock for transaction" and logs an ERROR traceback on every cached step.
- **Prefect's temporary server.** With no API URL, Prefect starts a server process of
  its own (``SubprocessASGIServer``) and stops it at exit, which ``kill -9`` skips.
  :func:`guard_temporary_server` hands that process to the guardian, which stops it
  when its owner dies.
- **The events a flow run has sent.** The server records task runs from the events the
  process sends from a background worker, so a flow's final-state hook can read its run
  before the last task runs are there. :func:`send_pending_events` waits until that
  worker's queue is empty (``EventsWorker`` is a ``QueueService``, whose
  ``wait_until_empty`` joins the queue); the server then still takes a moment (about
  20 ms an event here) to record what it received.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID
from weakref import WeakKeyDictionary

import anyio
import pydantic_core
from prefect._internal.compatibility.blocks import call_explicitly_async_block_method
from prefect.blocks.core import Block
from prefect.client.orchestration import PrefectClient
from prefect.context import AsyncClientContext, FlowRunContext
from prefect.events.worker import EventsWorker
from prefect.filesystems import WritableFileSystem
from prefect.locking.filesystem import FileSystemLockManager
from prefect.settings import get_current_settings
from prefect.transactions import Transaction
from prefect.utilities.asyncutils import run_coro_as_sync

from aiorch.core.errors import ConfigurationError
from aiorch.core.guardian import Guardian
from aiorch.core.services import process_alive

# A PEP 440 specifier: the Prefect releases these touches were checked against.
CHECKED_PREFECT = ">=3.9.1,<3.10"
POLL_SECONDS = 0.1


_clients: WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, AsyncClientContext]] = (
    WeakKeyDictionary()
)
_lock = threading.Lock()


async def _client_context() -> AsyncClientContext:
    loop = asyncio.get_running_loop()
    api_url = str(get_current_settings().api.url or "ephemeral")
    with _lock:
        by_url = _clients.setdefault(loop, {})
        context = by_url.get(api_url)
    if context is None:
        context = AsyncClientContext()
        client: PrefectClient = context.client
        await client.__aenter__()
        with _lock:
            by_url[api_url] = context
    return context


async def _with_shared_client[T](coroutine: Coroutine[Any, Any, T]) -> T:
    if AsyncClientContext.get() is not None:
        return await coroutine
    context = await _client_context()
    token = AsyncClientContext.__var__.set(context)
    try:
        return await coroutine
    finally:
        AsyncClientContext.__var__.reset(token)


def run_sync[T](coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion from sync code, with a reused Prefect client."""
    result: T = run_coro_as_sync(_with_shared_client(coroutine))
    return result


def block_document_id(block: Block) -> UUID:
    """The id of the saved document a loaded block came from.

    Raises:
        ConfigurationError: the block was never saved or loaded.
    """
    identifier = getattr(block, "_block_document_id", None)
    if not isinstance(identifier, UUID):
        raise ConfigurationError(
            f"{type(block).__name__}: the block has no saved document; save or load it first"
        )
    return identifier


async def call_block_method(block: WritableFileSystem, method: str, *args: Any) -> Any:
    """Call a storage block's async form of ``method`` (``read_path``, ``write_path``)."""
    return await call_explicitly_async_block_method(block, method, args, {})


class AtomicFileSystemLockManager(FileSystemLockManager):
    """FileSystemLockManager with atomic lock creation and non-blocking async waits."""

    def _break_if_stale(self, key: str) -> None:
        lock_path = self._lock_path_for_key(key)
        seen = _read(lock_path)
        if seen is None or not _holder_is_gone(seen):
            return
        self._ensure_lock_files_directory_exists()
        with (self.lock_files_directory / ".stale-guard").open("a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            if _read(lock_path) == seen:
                lock_path.unlink(missing_ok=True)

    def _try_acquire(self, key: str, holder: str, hold_timeout: float | None) -> bool:
        self._break_if_stale(key)
        if self.is_locked(key) and not self.is_lock_holder(key, holder):
            return False
        if self.is_lock_holder(key, holder):
            return True
        self._ensure_lock_files_directory_exists()
        lock_path = self._lock_path_for_key(key)
        expiration = datetime.now(UTC) + timedelta(seconds=hold_timeout) if hold_timeout else None
        content = {
            "holder": holder,
            "expiration": str(expiration) if expiration else None,
            "pid": os.getpid(),
            "guardian": Guardian.of_process().pid,
            "host": socket.gethostname(),
        }
        descriptor, staged = tempfile.mkstemp(dir=self.lock_files_directory, suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(pydantic_core.to_json(content))
            os.link(staged, lock_path)
        except FileExistsError:
            return False
        finally:
            Path(staged).unlink(missing_ok=True)
        self._locks[key] = {"holder": holder, "expiration": expiration, "path": lock_path}
        return True

    def _attempts(
        self, key: str, holder: str, acquire_timeout: float | None, hold_timeout: float | None
    ) -> Iterator[bool]:
        """Each attempt to take the lock, until it is taken or time is up.

        False means wait, then try again; the last is True when the lock was taken. Stops
        after ``acquire_timeout`` seconds (never if None).
        """
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        while not self._try_acquire(key, holder, hold_timeout):
            if deadline is not None and time.monotonic() >= deadline:
                return
            yield False
        yield True

    def acquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        """Take the lock, waiting up to ``acquire_timeout`` seconds (forever if None)."""
        for taken in self._attempts(key, holder, acquire_timeout, hold_timeout):
            if taken:
                return True
            time.sleep(POLL_SECONDS)
        return False

    async def aacquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        """Take the lock without blocking the event loop while waiting."""
        for taken in self._attempts(key, holder, acquire_timeout, hold_timeout):
            if taken:
                return True
            await anyio.sleep(POLL_SECONDS)
        return False


def _read(path: Path) -> dict[str, object] | None:
    try:
        content = json.loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return None
    return content if isinstance(content, dict) else None


def _holder_is_gone(lock: dict[str, object]) -> bool:
    """Whether the lock's holder and its work are dead (a lock of this host only).

    The holder's guardian outlives it until the holder's commands are dead, so a lock
    whose holder was killed mid-step is not taken over while the step still runs.
    """
    if lock.get("host") != socket.gethostname():
        return False  # another machine's lock: only its expiration can free it
    pid, guardian = lock.get("pid"), lock.get("guardian")
    if not isinstance(pid, int):
        return False
    watchers = [pid, guardian] if isinstance(guardian, int) else [pid]
    return not any(map(process_alive, watchers))


def lock_manager(directory: Path) -> AtomicFileSystemLockManager:
    """A lock manager keeping its files in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    return AtomicFileSystemLockManager(lock_files_directory=directory)


@contextmanager
def outside_transactions() -> Iterator[None]:
    """Run the body as if no transaction were open: tasks it calls commit as they end."""
    token = Transaction.__var__.set(None)  # type: ignore[arg-type]
    try:
        yield
    finally:
        Transaction.__var__.reset(token)


def guard_temporary_server(guardian: Guardian) -> None:
    """Have ``guardian`` stop Prefect's temporary server of this process if it dies."""
    module = sys.modules.get("prefect.server.api.server")
    if module is None:  # never imported: no temporary server runs in this process
        return
    for server in list(module.SubprocessASGIServer._instances.values()):
        process = getattr(server, "server_process", None)
        if server.running and process is not None and process.poll() is None:
            guardian.watch(process.pid, group=False)


async def send_pending_events(flow_run_id: UUID, deadline_seconds: float) -> bool:
    """Inside flow run ``flow_run_id``, wait until the process has sent its events.

    Whether it waited: outside that flow run there is nothing of its own to wait for.
    Gives up after ``deadline_seconds``, as a worker that stopped never empties its queue.
    """
    context = FlowRunContext.get()
    if context is None or context.flow_run is None or context.flow_run.id != flow_run_id:
        return False
    worker = EventsWorker.instance()
    with anyio.move_on_after(deadline_seconds):
        await anyio.to_thread.run_sync(worker.wait_until_empty, abandon_on_cancel=True)
    return True
