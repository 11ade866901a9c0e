"""The breakers aiorch puts around its own dependencies, named per endpoint.

- ``engine:<runner>:<endpoint>`` around each container step that runs on Dagger or
  Docker (:func:`tasks.container.breaker.engine_breaker`, beside the steps it guards).
- ``model:<endpoint fingerprint>:<model>`` around each model request (replays never
  reach it); only retryable provider failures count. An open model breaker moves the
  agent call on to its next fallback model.

Both use :data:`DEPENDENCY_BREAKER` and the settings' store, so every process on the
machine (or every machine, with PostgreSQL) sees the same state.
"""

from __future__ import annotations

from tasks.resilience.breaker import BreakerConfig, CircuitBreaker

DEPENDENCY_BREAKER = BreakerConfig(
    window="count",
    window_size=20,
    minimum_calls=5,
    failure_rate_threshold=50,
    wait_seconds=30,
    permitted_calls_in_half_open=2,
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
