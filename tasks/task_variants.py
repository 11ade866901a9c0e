"""Prefect task variants made once per name: ``Task.with_options`` costs about a millisecond.

aiorch names its inner task runs after the step, model or tool they run. Each
``with_options`` builds a new Task, which reads the function's source again
(``inspect.getsource``): 1.2-1.7 ms measured here, paid on every step, model request and
tool call before this cache.

Example:
    ```python
    from prefect import task

    from tasks.task_variants import named

    @task
    def greet() -> str:
        return "hi"

    assert named(greet, "greet-alice") is named(greet, "greet-alice")
    ```
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, cast

from prefect import Task

VARIANTS = 1024


@lru_cache(maxsize=VARIANTS)
def _named(task: Task[Any, Any], run_name: str) -> Task[Any, Any]:
    return task.with_options(task_run_name=run_name)


def named[**P, R](task: Task[P, R], run_name: str) -> Task[P, R]:
    """``task.with_options(task_run_name=run_name)``, made once and then reused."""
    return cast(Task[P, R], _named(task, run_name))
