"""The circuit breaker around the engine a container step runs on.

``engine:<runner>:<endpoint>`` guards each step that runs on Dagger or Docker (cache hits
never reach it). Only ``EngineUnavailable`` counts as a failure, since a step whose
command fails says nothing about the engine. It shares :data:`DEPENDENCY_BREAKER` with
the model breakers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiorch.tasks.container.dagger_engine import DaggerEngine
from aiorch.tasks.container.errors import EngineUnavailable
from aiorch.tasks.container.spec import RunnerKind
from aiorch.tasks.resilience.breaker import DEPENDENCY_BREAKER, CircuitBreaker

if TYPE_CHECKING:
    from prefect_docker import DockerHost


def _engine_failure(error: BaseException) -> bool:
    return isinstance(error, EngineUnavailable)


def engine_breaker(
    runner: RunnerKind, docker_host: DockerHost | None, dagger_engine: DaggerEngine | None
) -> CircuitBreaker | None:
    """The breaker of the engine a step runs on; None for host processes."""
    if runner is RunnerKind.DOCKER:
        endpoint = (docker_host.base_url if docker_host else None) or "default"
    elif runner is RunnerKind.DAGGER:
        engine = dagger_engine or DaggerEngine()
        endpoint = engine.runner_host or engine.cli_path
    else:
        return None
    return CircuitBreaker(
        f"engine:{runner.value}:{endpoint}"[:200], DEPENDENCY_BREAKER, is_failure=_engine_failure
    )
