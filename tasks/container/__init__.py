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
    SecretRef,
    StepInput,
    StepResult,
)
from aiorch.tasks.container.task import arun_step, run_step

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
