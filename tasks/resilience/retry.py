"""Retry policies that plug into Prefect's task options.

Prefect retries a task ``retries`` times, waits ``retry_delay_seconds[attempt]`` and
asks ``retry_condition_fn`` first. A :class:`RetryPolicy` fills all three: exponential
backoff with full jitter (each wait is uniform between 0 and ``min(cap, base * 2**n)``,
which spreads a crowd of clients better than fixed or equal jitter), a cap, the wait an
error asks for (``retry_after``, e.g. from an open circuit breaker or a provider's
Retry-After) when it is longer, and a condition driven by the error taxonomy: errors
marked non-retryable fail at once.

Example:
    ```python
    from prefect import task

    from aiorch.tasks.resilience.retry import RetryPolicy

    policy = RetryPolicy(retries=4, base_delay_seconds=1, max_delay_seconds=30)

    @task(**policy.task_options())
    def fetch() -> str:
        return "ok"
    ```
"""

from __future__ import annotations

import random
from contextvars import ContextVar
from typing import Any, SupportsIndex, overload

from prefect.client.schemas.objects import State
from pydantic import ConfigDict, Field

from aiorch.core.models import AiorchModel

_requested_wait: ContextVar[float | None] = ContextVar("aiorch_retry_after", default=None)


def is_retryable(error: BaseException) -> bool:
    """The taxonomy's answer: aiorch errors say so; other exceptions may be transient."""
    return bool(getattr(error, "retryable", True))


class BackoffDelays(list[float]):
    """Prefect's ``retry_delay_seconds`` list, computed when Prefect reads an entry.

    Prefect only accepts a number, a list or a callable evaluated once; a list whose
    items are drawn at read time gives every retry fresh jitter and lets the last
    error's ``retry_after`` lengthen the wait.
    """

    def __init__(self, policy: RetryPolicy) -> None:
        super().__init__([policy.max_delay_seconds] * max(policy.retries, 1))
        self._policy = policy
        self._random = random.Random(policy.seed)

    @overload
    def __getitem__(self, index: SupportsIndex) -> float: ...

    @overload
    def __getitem__(self, index: slice) -> list[float]: ...

    def __getitem__(self, index: SupportsIndex | slice) -> float | list[float]:
        if isinstance(index, slice):
            return [self[position] for position in range(len(self))[index]]
        return self._policy.delay(int(index), self._random.random(), _requested_wait.get())


class RetryPolicy(AiorchModel):
    """How often and how long to wait between attempts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retries: int = Field(default=3, ge=0, le=50, description="Retries after the first try.")
    base_delay_seconds: float = Field(default=1.0, ge=0, description="First backoff step.")
    max_delay_seconds: float = Field(default=60.0, ge=0, description="Cap on one wait.")
    jitter: bool = Field(default=True, description="Full jitter; off waits the full step.")
    honour_retry_after: bool = Field(
        default=True, description="Wait at least what the error asks for (retry_after)."
    )
    seed: int | None = Field(default=None, description="Seed for repeatable jitter (tests).")

    def delay(self, attempt: int, draw: float, requested: float | None = None) -> float:
        """Seconds to wait before retry ``attempt`` (0-based) given a uniform ``draw``."""
        step = min(self.max_delay_seconds, self.base_delay_seconds * float(2**attempt))
        wait = step * draw if self.jitter else step
        if self.honour_retry_after and requested is not None:
            wait = max(wait, requested)
        return wait

    def should_retry(self, task: Any, task_run: Any, state: State[Any]) -> bool:
        """Prefect's ``retry_condition_fn``: retry only what the taxonomy marks retryable."""
        try:
            state.result()
        except BaseException as error:  # the state's own exception, re-raised to classify
            _requested_wait.set(getattr(error, "retry_after", None))
            return is_retryable(error)
        return False

    def task_options(self) -> dict[str, Any]:
        """Keyword arguments for ``@task(...)`` or ``task.with_options(...)``."""
        return {
            "retries": self.retries,
            "retry_delay_seconds": BackoffDelays(self) if self.retries else 0,
            "retry_condition_fn": self.should_retry,
        }
