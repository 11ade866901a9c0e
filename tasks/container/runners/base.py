"""The interface every runner implements."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from aiorch.tasks.container.logs import StepOutput
from aiorch.tasks.container.spec import ContainerStep, RunnerKind


@dataclass(frozen=True)
class Execution:
    """What a runner observed. ``outputs_archive`` is None unless every command succeeded."""

    exit_code: int
    duration_seconds: float
    outputs_archive: bytes | None


class StepRunner(Protocol):
    """Runs a step on one engine.

    A runner returns an Execution for commands that ran (whatever their exit code), and
    raises StepTimedOut, EngineUnavailable or another StepError when they could not run
    to the end. It removes everything it created, also when cancelled.
    """

    kind: RunnerKind
    image_used: bool

    async def image_identity(self, image: str) -> str | None:
        """An immutable id for ``image`` (digest or image id), or None if unknown."""
        ...

    async def run(
        self,
        step: ContainerStep,
        secrets: Mapping[str, str],
        output: StepOutput,
        *,
        engine_cache: bool = True,
    ) -> Execution:
        """Run ``step``'s commands with ``secrets`` as environment variables.

        ``engine_cache=False`` makes an engine with its own cache (Dagger) run the
        commands again instead of serving them from that cache.
        """
        ...
