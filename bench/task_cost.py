"""What one Prefect task costs on this machine, measured in the run that needs it.

The overhead targets are stated per Prefect task ("no more than one task overhead per
model request"), and a step or agent call is one or two tasks more than its baseline, so
each benchmark measures the unit in the same run as the comparison it explains.

Example:
    ```python
    from prefect import flow

    from bench.task_cost import prefect_task_cost

    @flow
    def measure() -> float:
        return prefect_task_cost(5)

    print(f"{measure() * 1000:.1f} ms per task")
    ```
"""

from __future__ import annotations

import statistics

from prefect import task

from bench.harness import interleave, timed


@task(name="trivial")
def trivial() -> int:
    """A task that does nothing: its cost is Prefect's per-task overhead."""
    return 1


def _nothing() -> int:
    return 1


def prefect_task_cost(repeat: int) -> float:
    """Median seconds a trivial task takes over a plain call (call inside a flow)."""
    plain, in_task = interleave(timed(_nothing), timed(trivial), repeat)
    return statistics.median(in_task) - statistics.median(plain)
