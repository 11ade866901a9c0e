"""``@dagger_task``: ordinary ``dag.container()...`` code as a Prefect task.

The decorated async function runs with the process's Dagger session connected to the
global ``dag`` client, the engine's log lines in the task's Prefect logs, Dagger's exec
errors turned into :class:`StepFailed` (exit code and output tails) and a lost engine
into :class:`EngineUnavailable`. By default its result is cached on its inputs and
source, like any Prefect task with ``cache_policy=INPUTS + TASK_SOURCE``.

The SDK has one global connection per process, so code-first tasks in one process take
turns holding it; for parallel fan-out use ``run_step`` with ContainerSteps, or run
several processes.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, overload

import anyio
import dagger
from prefect import Task, get_run_logger, task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from aiorch.core.errors import ConfigurationError
from aiorch.core.settings import load_settings
from aiorch.tasks.container.dagger_engine import DaggerEngine
from aiorch.tasks.container.dagger_session import ensure_session
from aiorch.tasks.container.errors import EngineUnavailable, StepFailed

P = ParamSpec("P")
R = TypeVar("R")

_global_connection = threading.Lock()


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


@overload
def dagger_task[**P, R](
    function: Callable[P, Awaitable[R]], /
) -> Task[P, Coroutine[Any, Any, R]]: ...


@overload
def dagger_task(
    *, dagger_engine: DaggerEngine | None = None, **task_options: Any
) -> Callable[[Callable[P, Awaitable[R]]], Task[P, Coroutine[Any, Any, R]]]: ...


def dagger_task[**P, R](
    function: Callable[P, Awaitable[R]] | None = None,
    /,
    *,
    dagger_engine: DaggerEngine | None = None,
    **task_options: Any,
) -> (
    Task[P, Coroutine[Any, Any, R]]
    | Callable[[Callable[P, Awaitable[R]]], Task[P, Coroutine[Any, Any, R]]]
):
    """Turn an async function that uses ``dagger.dag`` into a Prefect task.

    Args:
        function: The pipeline function (when used without parentheses).
        dagger_engine: The Dagger CLI and engine; the DaggerEngine block's defaults if None.
        **task_options: Prefect task options (``retries``, ``cache_policy``, ``tags``, ...).

    Example:
        ```python
        from dagger import dag

        from aiorch.tasks.container.pipeline import dagger_task

        @dagger_task(retries=2)
        async def python_version(image: str) -> str:
            return await dag.container().from_(image).with_exec(["python", "-V"]).stdout()
        ```
    """

    def decorate(fn: Callable[P, Awaitable[R]]) -> Task[P, Coroutine[Any, Any, R]]:
        if not inspect.iscoroutinefunction(fn):
            raise ConfigurationError(
                f"@dagger_task needs an async function (the Dagger SDK is async); "
                f"make {fn.__name__} 'async def'"
            )
        engine = dagger_engine or DaggerEngine()
        name = fn.__name__.replace("_", "-")

        @functools.wraps(fn)
        async def with_session(*args: P.args, **kwargs: P.kwargs) -> R:
            logger = get_run_logger()
            session = await anyio.to_thread.run_sync(ensure_session, engine)
            logger.info("[%s] %s", name, session.description)
            await anyio.to_thread.run_sync(_global_connection.acquire)
            try:
                # A connection that failed to start stays in the SDK's global singleton and
                # pins it to its old port; reset it so this task connects to the session.
                await dagger.close()
                with session.log.attached(lambda line: logger.info("[%s] engine: %s", name, line)):
                    async with dagger.connection(dagger.Config(retry=None)):
                        return await fn(*args, **kwargs)
            except dagger.ExecError as error:
                lines = load_settings().log_tail_lines
                raise StepFailed(
                    name, error.exit_code, _tail(error.stdout, lines), _tail(error.stderr, lines)
                ) from None
            except (dagger.ClientConnectionError, dagger.TransportError) as error:
                raise EngineUnavailable(f"lost the Dagger engine: {error}", step=name) from None
            finally:
                _global_connection.release()

        options = {"name": name, "cache_policy": INPUTS + TASK_SOURCE, **task_options}
        decorated: Task[P, Coroutine[Any, Any, R]] = task(**options)(with_session)
        return decorated

    return decorate(function) if function is not None else decorate
