"""The breakers aiorch puts around its own dependencies, named per endpoint.

- ``engine:<runner>:<endpoint>`` around each container step that runs on Dagger or
  Docker (cache hits never reach it); only ``EngineUnavailable`` counts as a failure,
  since a step whose command fails says nothing about the engine.
- ``model:<endpoint fingerprint>:<model>`` around each model request (replays never
  reach it); only retryable provider failures count. An open model breaker moves the
  agent call on to its next fallback model.

Both use :data:`DEPENDENCY_BREAKER` and the settings' store, so every process on the
machine (or every machine, with PostgreSQL) sees the same state.
"""

from __future__ import annotations

from prefect_docker import DockerHost

from agent_blocks.dagger_engine import DaggerEngine
from tasks.container.errors import EngineUnavailable
from tasks.container.spec import RunnerKind
from tasks.resilience.breaker import BreakerConfig, CircuitBreaker

DEPENDENCY_BREAKER = BreakerConfig(
    window="count",
    window_size=20,
    minimum_calls=5,
    failure_rate_threshold=50,
    wait_seconds=30,
    permitted_calls_in_half_open=2,
)


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


def _provider_failure(error: BaseException) -> bool:
    from tasks.agents.errors import AgentCallError

    return isinstance(error, AgentCallError) and error.retryable


def model_breaker(endpoint_fingerprint: str, model: str) -> CircuitBreaker:
    """The breaker of one model at one endpoint."""
    return CircuitBreaker(
        f"model:{endpoint_fingerprint}:{model}"[:200],
        DEPENDENCY_BREAKER,
        is_failure=_provider_failure,
    )
