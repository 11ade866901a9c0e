"""Inner task calls whose records are stored as each ends: one helper, one variant cache.

aiorch's tasks compute the content key of their work in the calling task (where the
runner, the image identity or the flow run are known) and pass it as the ``cache_key``
parameter of an inner task that does the work (a step execution, a model request, a tool
call); :class:`PrecomputedKey` hands it to Prefect. :func:`call_stored` makes that call:

- outside the caller's transaction, so the inner record is written as the call ends.
  Nested in the calling task's transaction (or a user's), it would be written only when
  that one commits, and dropped if it rolls back: a process killed after the work
  finished, or a later failure in the same call, would lose it and the rerun would do it
  again;
- through a task variant named after what it runs and made once per name and options:
  each ``Task.with_options`` reads the function's source again (``inspect.getsource``),
  1.2-1.7 ms measured here, paid on every call before this cache;
- reporting whether the record came from storage (the state is ``Cached``);
- with Prefect's temporary server (no API URL) handed to the process's guardian, so a
  killed flow process does not leave it running.

Example:
    ```python
    from prefect import flow, task

    from aiorch.tasks.durable import CallOptions, PrecomputedKey, call_stored

    @task(cache_policy=PrecomputedKey(), persist_result=True)
    async def double(value: int, cache_key: str | None) -> int:
        return 2 * value

    @flow
    async def twice() -> bool:
        options = CallOptions(run_name="double-21")
        first = await call_stored(double, options, 21, cache_key="double-21")
        again = await call_stored(double, options, 21, cache_key="double-21")
        return first.value == again.value == 42 and again.cache_hit
    ```
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, cast
from uuid import UUID

from prefect import Task
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.client.schemas.objects import State
from prefect.context import TaskRunContext

from aiorch.core.guardian import Guardian
from aiorch.core.prefect_internals import (
    guard_temporary_server,
    lock_manager,
    outside_transactions,
)

VARIANTS = 1024


@dataclass
class PrecomputedKey(CachePolicy):
    """Uses the ``cache_key`` parameter as the key; None (or absent) means no caching."""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """Return the caller's key unchanged."""
        key = inputs.get("cache_key")
        return key if isinstance(key, str) else None


@dataclass(frozen=True)
class CallOptions:
    """How one inner call is named and cached; hashable, so its variant is made once.

    Attributes:
        run_name: The task run's name (what it runs: the step and runner, the model).
        cache: False stores and reuses nothing (the task's ``cache_key`` is ignored).
        lock_dir: With a directory, identical calls running at once run once: the cache
            uses SERIALIZABLE isolation with a file lock kept there. None leaves the
            task's own cache policy.
        cache_expiration: How long a record stays valid; the task's default if None.
        refresh_cache: Run even if a record exists, and replace it.
    """

    run_name: str
    cache: bool = True
    lock_dir: Path | None = None
    cache_expiration: timedelta | None = None
    refresh_cache: bool = False


@dataclass(frozen=True)
class Stored[R]:
    """What an inner call returned, and whether it was replayed from storage."""

    value: R
    cache_hit: bool
    task_run_id: UUID | None


@lru_cache(maxsize=VARIANTS)
def _variant(task: Task[Any, Any], options: CallOptions) -> Task[Any, Any]:
    changes: dict[str, Any] = {"task_run_name": options.run_name}
    if not options.cache:
        changes["cache_policy"] = NO_CACHE
    elif options.lock_dir is not None:
        changes["cache_policy"] = PrecomputedKey().configure(
            isolation_level="SERIALIZABLE", lock_manager=lock_manager(options.lock_dir)
        )
    if options.cache_expiration is not None:
        changes["cache_expiration"] = options.cache_expiration
    if options.refresh_cache:
        changes["refresh_cache"] = True
    return task.with_options(**changes)


async def call_stored[R](
    task: Task[..., Coroutine[Any, Any, R]],
    options: CallOptions,
    *args: Any,
    **kwargs: Any,
) -> Stored[R]:
    """Call the async inner ``task`` so its record is stored as it ends.

    Raises:
        Exception: whatever the task raised (its state is Failed; nothing was stored).
    """
    variant = cast(Callable[..., Awaitable[State[R]]], _variant(task, options))
    guard_temporary_server(Guardian.of_process())
    with outside_transactions():
        state = await variant(*args, return_state=True, **kwargs)
    value: R = await state.aresult()
    return Stored(
        value=value,
        cache_hit=state.name == "Cached",
        task_run_id=state.state_details.task_run_id,
    )
