"""Container steps: a step spec, three runners (dagger, docker, local) and Prefect tasks.

Example:
    ```python
    from prefect import flow

    from aiorch.tasks.container import ContainerStep, run_step

    @flow
    def build() -> None:
        step = ContainerStep(name="hello", image="busybox:1.36", commands=[["echo", "hi"]])
        print(run_step(step, runner="auto").stdout_tail)
    ```
"""

from typing import TYPE_CHECKING

from aiorch.core.lazy import lazy_exports

if TYPE_CHECKING:
    from aiorch.core.secrets import SecretRef
    from aiorch.tasks.container.errors import (
        EngineUnavailable,
        StepError,
        StepFailed,
        StepTimedOut,
    )
    from aiorch.tasks.container.spec import (
        CacheVolume,
        ContainerStep,
        RunnerKind,
        StepInput,
        StepResult,
    )
    from aiorch.tasks.container.task import arun_step, run_step

# Imported on first use: aiorch.blocks (Prefect's collections, at every server start) needs
# only the DaggerEngine block of this package, not the step task and its runners.
_EXPORTS = {
    "CacheVolume": "aiorch.tasks.container.spec",
    "ContainerStep": "aiorch.tasks.container.spec",
    "EngineUnavailable": "aiorch.tasks.container.errors",
    "RunnerKind": "aiorch.tasks.container.spec",
    "SecretRef": "aiorch.core.secrets",
    "StepError": "aiorch.tasks.container.errors",
    "StepFailed": "aiorch.tasks.container.errors",
    "StepInput": "aiorch.tasks.container.spec",
    "StepResult": "aiorch.tasks.container.spec",
    "StepTimedOut": "aiorch.tasks.container.errors",
    "arun_step": "aiorch.tasks.container.task",
    "run_step": "aiorch.tasks.container.task",
}

__all__ = [
    "CacheVolume",
    "ContainerStep",
    "EngineUnavailable",
    "RunnerKind",
    "SecretRef",
    "StepError",
    "StepFailed",
    "StepInput",
    "StepResult",
    "StepTimedOut",
    "arun_step",
    "run_step",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
