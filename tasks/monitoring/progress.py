"""Live progress of a fan-out, as a Prefect progress artifact updated in place.

Example:
    ```python
    from prefect import flow, task

    from aiorch.tasks.monitoring.progress import wait_with_progress

    @task
    def square(value: int) -> int:
        return value * value

    @flow
    def squares() -> list[int]:
        return wait_with_progress(square.map([1, 2, 3]), key="squares-progress")

    print(squares())  # [1, 4, 9]
    ```
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import PrefectFuture, as_completed


def wait_with_progress[T](
    futures: Sequence[PrefectFuture[T]], *, key: str, description: str | None = None
) -> list[T]:
    """Wait for ``futures``, keeping the ``key`` progress artifact at the share done.

    Returns the results in the order of ``futures``; a failed future raises, after the
    progress shows how far the fan-out got.
    """
    total = len(futures)
    artifact = cast(
        UUID,
        create_progress_artifact(
            progress=0.0 if total else 100.0,
            key=key,
            description=description or f"{total} task runs",
        ),
    )
    for done, _ in enumerate(as_completed(list(futures)), start=1):
        update_progress_artifact(artifact_id=artifact, progress=100.0 * done / total)
    return [future.result() for future in futures]
