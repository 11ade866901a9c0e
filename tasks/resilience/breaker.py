"""Circuit breakers whose state is shared by every process through a SQL store.

A breaker watches calls to one dependency (a runner's engine, a model endpoint, any
function) and stops calling it while it is failing:

- ``closed``: calls go through and are recorded in a sliding window (the last N calls,
  or the calls of the last N seconds). Once the window holds ``minimum_calls``, a
  failure rate or slow-call rate at or over its threshold opens the breaker.
- ``open``: calls fail at once with :class:`CircuitOpenError` (``retry_after`` says how
  long is left) for ``wait_seconds``; then the breaker is half-open.
- ``half_open``: ``permitted_calls_in_half_open`` probe calls go through, counted
  across processes; any failure opens the breaker again, all succeeding closes it. A
  probe holds its slot on a lease of ``probe_lease_seconds``: a probe whose process died,
  or whose outcome could not be stored, frees its slot when the lease ends.
- ``forced_open`` and ``disabled``: set by an operator (``aiorch breaker``); they stay
  until reset.

What counts: an exception the failure rule (``is_failure``) accepts is a failure, and
so is a call cancelled from outside (``asyncio.wait_for``, Prefect's ``timeout_seconds``,
an anyio cancel scope): a dependency that hangs behind a timeout trips the breaker. A
process shutting down (``KeyboardInterrupt``, ``SystemExit``) records nothing.

When the store cannot be reached (:class:`BreakerStoreUnavailable`): a call is refused
before it is made (fail closed: the breaker cannot tell whether the dependency is
healthy), but a call that has been made keeps its outcome: its result is returned (or
its own error raised) and the lost bookkeeping is logged as a warning.

Transitions are emitted, once stored, as Prefect events named after the new state
(``aiorch.breaker.open``, ``.half-open``, ``.closed``, ``.forced-open``, ``.disabled``)
about the resource ``aiorch.breaker.<name>``. The clock can be injected for tests.

Example:
    ```python
    from aiorch.tasks.resilience.breaker import BreakerConfig, CircuitBreaker

    breaker = CircuitBreaker("payments-api", BreakerConfig(minimum_calls=5))

    @breaker
    def charge() -> str:
        return "ok"

    print(charge())  # ok
    ```
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, Self, TypeVar, cast

import anyio
from prefect.events import emit_event
from pydantic import ConfigDict, Field, model_validator

from aiorch.core.errors import AiorchError, ConfigurationError
from aiorch.core.models import AiorchModel

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from aiorch.tasks.resilience.breaker_store import BreakerStore

logger = logging.getLogger("aiorch.breaker")
P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
Clock = Callable[[], float]
# State changes a decision made, emitted once its transaction has committed.
Changes = list[tuple["BreakerState", "BreakerState"]]


class BreakerState(StrEnum):
    """Where a breaker is."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"


class BreakerConfig(AiorchModel):
    """How a breaker decides. Defaults follow resilience4j's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: Literal["count", "time"] = Field(
        default="count", description="Sliding window over the last N calls or N seconds."
    )
    window_size: int = Field(default=100, ge=1, description="N calls, or N seconds.")
    minimum_calls: int = Field(
        default=10, ge=1, description="Calls the window needs before rates count."
    )
    failure_rate_threshold: float = Field(
        default=50.0, gt=0, le=100, description="Failure rate (%) that opens the breaker."
    )
    slow_call_rate_threshold: float = Field(
        default=100.0, gt=0, le=100, description="Slow-call rate (%) that opens the breaker."
    )
    slow_call_seconds: float = Field(
        default=60.0, gt=0, description="A call slower than this counts as slow."
    )
    wait_seconds: float = Field(
        default=60.0, ge=0, description="How long the breaker stays open before probing."
    )
    permitted_calls_in_half_open: int = Field(
        default=10, ge=1, description="Probe calls allowed while half-open (all processes)."
    )
    probe_lease_seconds: float = Field(
        default=300.0,
        gt=0,
        description=(
            "How long a half-open probe holds its slot; a probe that has not reported by "
            "then (its process died, its outcome could not be stored) frees it. Make it "
            "longer than the slowest call."
        ),
    )

    @model_validator(mode="after")
    def _window_holds_minimum(self) -> Self:
        if self.window == "count" and self.minimum_calls > self.window_size:
            raise ValueError(
                f"minimum_calls ({self.minimum_calls}) is larger than a count window of "
                f"{self.window_size} calls, so the breaker could never open; lower "
                "minimum_calls or raise window_size"
            )
        return self


DEPENDENCY_BREAKER = BreakerConfig(
    window="count",
    window_size=20,
    minimum_calls=5,
    failure_rate_threshold=50,
    wait_seconds=30,
    permitted_calls_in_half_open=2,
    # Longer than a container step's default timeout (600 s), which the engine breaker
    # wraps whole.
    probe_lease_seconds=660,
)
"""The window of the breakers aiorch puts around its own dependencies: each engine a
container step runs on (``engine:...``, in :mod:`aiorch.tasks.container.breaker`) and
each model at each endpoint (``model:...``, in :mod:`aiorch.tasks.agents.breaker`).
Every process on the machine (or every machine, with PostgreSQL) sees the same state."""


class CircuitOpenError(AiorchError):
    """The breaker is open: the call was not made."""

    kind = "circuit-open"
    title = "Circuit breaker open"
    status = 503
    retryable = True

    def __init__(self, breaker: str, state: BreakerState, retry_after: float | None) -> None:
        wait = f"; retry in {retry_after:.1f} s" if retry_after is not None else ""
        super().__init__(f"circuit breaker {breaker!r} is {state.value}{wait}")
        self.breaker = breaker
        self.state = state
        self.retry_after = retry_after

    def context(self) -> dict[str, Any]:
        """The breaker and its state."""
        return {"breaker": self.breaker, "breaker_state": self.state.value}


class Permit(AiorchModel):
    """The answer to "may I call?"."""

    allowed: bool
    state: BreakerState
    probe: bool = False
    probe_id: int | None = Field(default=None, description="The probe's lease, if a probe.")
    retry_after: float | None = None


def reopens_at(row: dict[str, Any], wait_seconds: float | None = None) -> float:
    """When a stored open breaker starts probing.

    A breaker object decides by its own ``wait_seconds``; without one (the command line
    knows no configuration) by the time stored when it opened, or never for a row an
    older aiorch wrote without it.
    """
    if wait_seconds is not None:
        return float(row["opened_at"] or 0.0) + wait_seconds
    stored = row.get("reopens_at")
    return math.inf if stored is None else float(stored)


def effective_state(
    row: dict[str, Any], now: float, wait_seconds: float | None = None
) -> BreakerState:
    """A stored breaker's state as a caller sees it: open past its wait is half-open."""
    state = BreakerState(row["state"])
    if state is BreakerState.OPEN and now >= reopens_at(row, wait_seconds):
        return BreakerState.HALF_OPEN
    return state


def counts_as_failure(error: BaseException) -> bool:
    """Default failure rule: errors a retry may fix say the dependency is unhealthy.

    A bad request (non-retryable) says nothing about the dependency, so it does not
    count; untyped exceptions do.
    """
    return bool(getattr(error, "retryable", True))


class CircuitBreaker:
    """A named breaker; its state lives in the store, shared by all processes."""

    def __init__(
        self,
        name: str,
        config: BreakerConfig | None = None,
        *,
        store: BreakerStore | None = None,
        clock: Clock = time.time,
        is_failure: Callable[[BaseException], bool] = counts_as_failure,
    ) -> None:
        if not name or len(name) > 200:
            raise ConfigurationError(
                "breaker name must be 1 to 200 characters, e.g. 'docker-engine'"
            )
        self.name = name
        self.config = config or BreakerConfig()
        self._store = store
        self.clock = clock
        self.is_failure = is_failure

    @property
    def store(self) -> BreakerStore:
        """The store (the settings' default unless one was given)."""
        if self._store is None:
            # SQLAlchemy loads with the first breaker asked, not with this module.
            from aiorch.tasks.resilience.breaker_store import BreakerStore

            self._store = BreakerStore.default()
        return self._store

    def state(self) -> BreakerState:
        """The current state, as a caller would see it now."""
        for row in self.store.states():
            if row["name"] == self.name:
                return effective_state(row, self.clock(), self.config.wait_seconds)
        return BreakerState.CLOSED

    def acquire(self) -> Permit:
        """Ask to make a call; a half-open probe slot is taken atomically.

        A closed or disabled breaker answers from a plain read: nothing is written, and
        a call let through just as another process opens the breaker is only recorded
        late, as in any breaker shared by concurrent callers.
        """
        current = self.store.peek(self.name)
        if current is None or current in {BreakerState.CLOSED.value, BreakerState.DISABLED.value}:
            return Permit(allowed=True, state=BreakerState(current or BreakerState.CLOSED.value))
        return self._decide(self._acquire)

    def _decide(self, decision: Callable[[Connection, dict[str, Any], float, Changes], T]) -> T:
        """Run ``decision`` in one transaction holding the breaker's row; then emit.

        Transitions are emitted once the transaction has committed: Prefect's first
        event in a process connects its events client (about 11 s without a configured
        server, which starts an ephemeral one), and every process waited for the store's
        write lock meanwhile.
        """

        def attempt() -> tuple[T, Changes]:
            now = self.clock()
            changes: Changes = []
            with self.store.locked(self.name, now) as (connection, row):
                return decision(connection, row, now, changes), changes

        result, changes = self.store.retrying(attempt)
        for previous, current in changes:
            self._emit(previous, current)
        return result

    def _acquire(
        self, connection: Connection, row: dict[str, Any], now: float, changes: Changes
    ) -> Permit:
        state = BreakerState(row["state"])
        if state in {BreakerState.DISABLED, BreakerState.CLOSED}:
            return Permit(allowed=True, state=state)
        if state is BreakerState.FORCED_OPEN:
            return Permit(allowed=False, state=state)
        if state is BreakerState.OPEN:
            reopen_at = reopens_at(row, self.config.wait_seconds)
            if now < reopen_at:
                return Permit(allowed=False, state=state, retry_after=reopen_at - now)
            self.store.set_state(
                connection,
                self.name,
                state=BreakerState.HALF_OPEN.value,
                probes_started=0,
                probes_succeeded=0,
                updated_at=now,
            )
            changes.append((state, BreakerState.HALF_OPEN))
            row = {**row, "probes_succeeded": 0}
            state = BreakerState.HALF_OPEN
        leases = self.store.live_probes(connection, self.name, now)
        taken = row["probes_succeeded"] + len(leases)
        if taken >= self.config.permitted_calls_in_half_open:
            # Every slot is out; the first lease to end (reported or lost) frees one.
            return Permit(allowed=False, state=state, retry_after=min(leases, default=now) - now)
        probe_id = self.store.take_probe(
            connection, self.name, now + self.config.probe_lease_seconds
        )
        self.store.set_state(connection, self.name, probes_started=taken + 1, updated_at=now)
        return Permit(allowed=True, state=state, probe=True, probe_id=probe_id)

    def record(self, permit: Permit, *, failed: bool, duration: float) -> BreakerState:
        """Record a call made under ``permit``; returns the state afterwards."""
        if permit.state is BreakerState.DISABLED:
            return permit.state
        config = self.config
        if (
            config.window == "count"
            and not permit.probe
            and not failed
            and duration < config.slow_call_seconds
        ):
            # A success added to a full window of successes leaves a full window of
            # successes: skip the write, and the write lock every process queues for.
            state, clean = self.store.clean_window(self.name, config.window_size)
            if clean:
                return BreakerState(state)
        return self._decide(functools.partial(self._record, permit, failed, duration))

    def _record(
        self,
        permit: Permit,
        failed: bool,
        duration: float,
        connection: Connection,
        row: dict[str, Any],
        now: float,
        changes: Changes,
    ) -> BreakerState:
        config = self.config
        slow = duration >= config.slow_call_seconds
        state = BreakerState(row["state"])
        if state is BreakerState.HALF_OPEN and permit.probe:
            if permit.probe_id is not None:
                self.store.release_probe(connection, permit.probe_id)
            if failed or slow:
                return self._move(connection, state, BreakerState.OPEN, now, changes)
            succeeded = row["probes_succeeded"] + 1
            if succeeded >= config.permitted_calls_in_half_open:
                return self._move(connection, state, BreakerState.CLOSED, now, changes)
            self.store.set_state(connection, self.name, probes_succeeded=succeeded, updated_at=now)
            return state
        if state is not BreakerState.CLOSED:
            return state  # a call that started before the breaker changed
        self.store.add_outcome(connection, self.name, now, failed, slow)
        calls = (
            self.store.window(connection, self.name, newest=config.window_size)
            if config.window == "count"
            else self.store.window(connection, self.name, since=now - config.window_size)
        )
        if len(calls) < config.minimum_calls:
            return state
        failure_rate = 100.0 * sum(failed for failed, _ in calls) / len(calls)
        slow_rate = 100.0 * sum(slow for _, slow in calls) / len(calls)
        if (
            failure_rate >= config.failure_rate_threshold
            or slow_rate >= config.slow_call_rate_threshold
        ):
            return self._move(connection, state, BreakerState.OPEN, now, changes)
        return state

    def _move(
        self,
        connection: Connection,
        previous: BreakerState,
        target: BreakerState,
        now: float,
        changes: Changes,
    ) -> BreakerState:
        """Change state inside the caller's transaction: fresh probes and window."""
        opening = target is BreakerState.OPEN
        self.store.set_state(
            connection,
            self.name,
            state=target.value,
            opened_at=now if opening else None,
            reopens_at=now + self.config.wait_seconds if opening else None,
            probes_started=0,
            probes_succeeded=0,
            updated_at=now,
        )
        self.store.clear_window(connection, self.name)
        changes.append((previous, target))
        return target

    def force(self, state: Literal["forced_open", "disabled", "closed"]) -> None:
        """Set the state by hand: ``forced_open``, ``disabled``, or ``closed`` (a reset)."""
        target = BreakerState(state)
        self._decide(
            lambda connection, row, now, changes: self._move(
                connection, BreakerState(row["state"]), target, now, changes
            )
        )

    def _emit(self, previous: BreakerState, current: BreakerState) -> None:
        if previous is current:
            return
        # Prefect ships events in the background and drops them without a client
        # context, so this never blocks or fails the call.
        emit_event(
            event=f"aiorch.breaker.{current.value.replace('_', '-')}",
            resource={
                "prefect.resource.id": f"aiorch.breaker.{self.name}",
                "prefect.resource.name": self.name,
            },
            payload={"breaker": self.name, "from": previous.value, "to": current.value},
        )

    def _refuse(self, permit: Permit) -> CircuitOpenError:
        return CircuitOpenError(self.name, permit.state, permit.retry_after)

    def _failed(self, error: BaseException) -> bool | None:
        """Whether ``error`` counts as a failure; None: record nothing (shutting down)."""
        if isinstance(error, KeyboardInterrupt | SystemExit):
            return None
        if not isinstance(error, Exception):
            return True  # cancelled from outside: the call did not finish in time
        return self.is_failure(error)

    def _keep_outcome(self, permit: Permit, failed: bool | None, duration: float) -> None:
        """Record the outcome of a call that was made; a store failure must not lose it."""
        if failed is None:
            return
        from aiorch.tasks.resilience.breaker_store import BreakerStoreUnavailable

        try:
            self.record(permit, failed=failed, duration=duration)
        except BreakerStoreUnavailable as unavailable:
            logger.warning(
                "breaker %r: the call's outcome (%s) was not recorded: %s",
                self.name,
                "failure" if failed else "success",
                unavailable,
            )

    @contextmanager
    def guard(self) -> Iterator[Permit]:
        """Make one call under the breaker: ``with breaker.guard(): ...``.

        Raises:
            CircuitOpenError: the breaker is open, forced open, or out of probes.
            BreakerStoreUnavailable: the store could not be asked; the call was not made.
        """
        permit = self.acquire()
        if not permit.allowed:
            raise self._refuse(permit)
        started = time.perf_counter()
        try:
            yield permit
        except BaseException as error:
            self._keep_outcome(permit, self._failed(error), time.perf_counter() - started)
            raise
        self._keep_outcome(permit, False, time.perf_counter() - started)

    async def call(self, function: Callable[[], Awaitable[R]]) -> R:
        """Await ``function()`` under the breaker (store access runs in a worker thread).

        Raises:
            CircuitOpenError: the breaker is open, forced open, or out of probes.
            BreakerStoreUnavailable: the store could not be asked; the call was not made.
        """
        permit = await anyio.to_thread.run_sync(self.acquire)
        if not permit.allowed:
            raise self._refuse(permit)
        started = time.perf_counter()
        try:
            result = await function()
        except BaseException as error:
            outcome = functools.partial(
                self._keep_outcome, permit, self._failed(error), time.perf_counter() - started
            )
            # A cancelled call is recorded too: shielded from the cancellation itself.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(outcome)
            raise
        outcome = functools.partial(
            self._keep_outcome, permit, False, time.perf_counter() - started
        )
        await anyio.to_thread.run_sync(outcome)
        return result

    def __call__(self, function: Callable[P, R]) -> Callable[P, R]:
        """Decorate a sync or async function so every call goes through the breaker."""
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await self.call(lambda: function(*args, **kwargs))

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with self.guard():
                return function(*args, **kwargs)

        return wrapper
