"""The circuit breaker around each model at each endpoint.

``model:<endpoint fingerprint>:<model>`` guards each model request (replays never reach
it). Only retryable provider failures count, so a refused prompt says nothing about the
provider's health. An open model breaker moves the agent call on to its next fallback.
"""

from __future__ import annotations

from aiorch.tasks.agents.errors import AgentCallError
from aiorch.tasks.resilience.breaker import DEPENDENCY_BREAKER, CircuitBreaker


def _provider_failure(error: BaseException) -> bool:
    return isinstance(error, AgentCallError) and error.retryable


def model_breaker(endpoint_fingerprint: str, model: str) -> CircuitBreaker:
    """The breaker of one model at one endpoint."""
    return CircuitBreaker(
        f"model:{endpoint_fingerprint}:{model}"[:200],
        DEPENDENCY_BREAKER,
        is_failure=_provider_failure,
    )
