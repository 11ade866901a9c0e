"""A minimal Dagger workflow that checks an engine end to end.

It starts (or joins) a session, asks the engine for its version through a code-first
task, and runs one container step through the dagger runner. Run it with
``aiorch run dagger-check`` wherever a dagger CLI is installed.

Example:
    ```python
    from aiorch.flows.dagger_check import dagger_check

    print(dagger_check(image="alpine:3.20").engine_version)
    ```
"""

from __future__ import annotations

from dagger import dag
from prefect import flow
from prefect.cache_policies import NO_CACHE

from aiorch.core.models import AiorchModel
from aiorch.tasks.container import ContainerStep, run_step
from aiorch.tasks.container.dagger_session import close_dagger_session
from aiorch.tasks.container.pipeline import dagger_task


class DaggerCheck(AiorchModel):
    """What the engine said."""

    engine_version: str
    container_output: str


@dagger_task(cache_policy=NO_CACHE)
async def engine_version() -> str:
    """The engine's version, through the global ``dag`` client."""
    return await dag.version()


@flow(
    name="aiorch-dagger-check",
    on_completion=[close_dagger_session],
    on_failure=[close_dagger_session],
    on_cancellation=[close_dagger_session],
    on_crashed=[close_dagger_session],
)
def dagger_check(image: str = "alpine:3.20") -> DaggerCheck:
    """Check that a Dagger engine answers and runs a container."""
    # An async task called from a sync flow returns a coroutine; submit() runs it.
    version = engine_version.submit().result()
    step = ContainerStep(
        name="dagger-check", image=image, commands=[["sh", "-c", "echo container ok"]]
    )
    result = run_step(step, "dagger", cache=False)
    return DaggerCheck(engine_version=version, container_output=result.stdout_tail)
