"""A sync and an async Prefect task from one async function: one signature, one docstring.

Prefect users expect both entry points (``run_step`` in sync flows, ``arun_step`` in async
ones). Both tasks wrap the same async function, so their arguments, defaults and
documentation are written once; the sync one runs it with
:func:`aiorch.core.prefect_internals.run_sync` (one reused Prefect client per loop).

Example:
    ```python
    from aiorch.tasks.twins import task_pair

    async def greet(name: str) -> str:
        return f"hello {name}"

    run_greet, arun_greet = task_pair(greet, "run_greet", "arun_greet", name="greet")
    ```
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from prefect import Task, task

from aiorch.core.prefect_internals import run_sync


def _named[F: Callable[..., Any]](twin: F, function: Callable[..., Any], name: str) -> F:
    # Prefect's task key starts with the function's name; the signature and docstring are
    # what Prefect and help() show.
    twin.__name__ = twin.__qualname__ = name
    twin.__module__ = function.__module__
    twin.__doc__ = function.__doc__
    twin.__annotations__ = dict(function.__annotations__)
    setattr(twin, "__signature__", inspect.signature(function))  # noqa: B010
    return twin


def task_pair[**P, R](
    function: Callable[P, Coroutine[Any, Any, R]],
    sync_name: str,
    async_name: str,
    **task_options: Any,
) -> tuple[Task[P, R], Task[P, Coroutine[Any, Any, R]]]:
    """The sync and the async task of ``function``, with the same Prefect options."""

    def sync_twin(*args: P.args, **kwargs: P.kwargs) -> R:
        return run_sync(function(*args, **kwargs))

    async def async_twin(*args: P.args, **kwargs: P.kwargs) -> R:
        return await function(*args, **kwargs)

    sync_task: Task[P, R] = task(**task_options)(_named(sync_twin, function, sync_name))
    async_task: Task[P, Coroutine[Any, Any, R]] = task(**task_options)(
        _named(async_twin, function, async_name)
    )
    return sync_task, async_task
