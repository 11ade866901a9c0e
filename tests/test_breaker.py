"""Circuit breakers: states, windows, thresholds, operators, with an injected clock."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from pydantic import ValidationError

from aiorch.tasks.resilience.breaker import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
)
from aiorch.tasks.resilience.breaker_report import breaker_rows
from aiorch.tasks.resilience.breaker_store import BreakerStore, BreakerStoreUnavailable
from aiorch.testing.prefect_server import poll_events

# Transitions are emitted as Prefect events: send them to the test server.
pytestmark = pytest.mark.usefixtures("prefect_api")


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Boom(Exception):
    """A failure that counts (untyped exceptions do)."""


@pytest.fixture
def store(scratch_dir: Path) -> Iterator[BreakerStore]:
    store = BreakerStore(f"sqlite:///{scratch_dir / 'breakers.sqlite'}")
    yield store
    store.engine.dispose()


def _breaker(store: BreakerStore, clock: FakeClock, **config: Any) -> CircuitBreaker:
    settings = {"window_size": 4, "minimum_calls": 4, "wait_seconds": 30, **config}
    return CircuitBreaker("dependency", BreakerConfig(**settings), store=store, clock=clock)


def _fail(breaker: CircuitBreaker) -> None:
    with pytest.raises(Boom), breaker.guard():
        raise Boom


def _succeed(breaker: CircuitBreaker) -> None:
    with breaker.guard():
        pass


def test_opens_at_the_threshold_rejects_half_opens_and_closes(store: BreakerStore) -> None:
    clock = FakeClock()
    breaker = _breaker(store, clock, permitted_calls_in_half_open=2)
    _succeed(breaker)
    _succeed(breaker)
    _fail(breaker)
    assert breaker.state() is BreakerState.CLOSED  # 3 calls: below minimum_calls
    _fail(breaker)  # 2 of 4 failed: 50 % reaches the threshold
    assert breaker.state() is BreakerState.OPEN

    with pytest.raises(CircuitOpenError) as refused, breaker.guard():
        raise AssertionError("an open breaker must not call")
    assert refused.value.retry_after == pytest.approx(30)
    assert refused.value.retryable is True

    clock.now += 30
    assert breaker.state() is BreakerState.HALF_OPEN
    _succeed(breaker)
    assert breaker.state() is BreakerState.HALF_OPEN  # one of two probes done
    _succeed(breaker)
    assert breaker.state() is BreakerState.CLOSED


def test_a_failing_probe_opens_again_and_probes_are_limited(store: BreakerStore) -> None:
    clock = FakeClock()
    breaker = _breaker(store, clock, permitted_calls_in_half_open=1)
    for _ in range(4):
        _fail(breaker)
    clock.now += 31
    permit = breaker.acquire()
    assert permit.allowed
    assert permit.probe
    assert not breaker.acquire().allowed  # the only probe slot is taken
    breaker.record(permit, failed=True, duration=0.1)
    assert breaker.state() is BreakerState.OPEN


def test_reads_do_not_wait_for_a_writer(store: BreakerStore) -> None:
    breaker = _breaker(store, FakeClock())
    _succeed(breaker)  # the breaker's row exists, closed
    writer = BreakerStore(store.url)
    try:
        with writer.engine.begin():  # another process holding SQLite's write lock
            started = time.monotonic()
            assert breaker.acquire().allowed
            assert breaker.state() is BreakerState.CLOSED
            # Well under the 10 s busy timeout a locked read would wait before failing.
            assert time.monotonic() - started < 5
    finally:
        writer.engine.dispose()


def test_successes_into_a_full_clean_window_write_nothing_and_change_nothing(
    store: BreakerStore,
) -> None:
    breaker = _breaker(store, FakeClock())
    for _ in range(4):
        _succeed(breaker)  # the count window of 4 is full of successes
    writer = BreakerStore(store.url)
    try:
        with writer.engine.begin():  # a write would wait here, then fail as locked
            started = time.monotonic()
            for _ in range(3):
                _succeed(breaker)
            assert time.monotonic() - started < 5
    finally:
        writer.engine.dispose()
    _fail(breaker)
    assert breaker.state() is BreakerState.CLOSED  # 1 of the last 4 failed
    _fail(breaker)
    assert breaker.state() is BreakerState.OPEN  # 2 of the last 4: as if all were written


def test_slow_calls_open_the_breaker(store: BreakerStore) -> None:
    clock = FakeClock()
    breaker = _breaker(store, clock, slow_call_seconds=2, slow_call_rate_threshold=75)
    for duration in (3, 3, 0.1, 3):
        breaker.record(breaker.acquire(), failed=False, duration=duration)
    assert breaker.state() is BreakerState.OPEN


def test_a_time_window_forgets_old_calls(store: BreakerStore) -> None:
    clock = FakeClock()
    breaker = _breaker(store, clock, window="time", window_size=10, minimum_calls=3)
    _fail(breaker)
    _fail(breaker)
    clock.now += 11  # both failures fall out of the window
    _succeed(breaker)
    _succeed(breaker)
    _fail(breaker)
    assert breaker.state() is BreakerState.CLOSED  # 1 of 3 in the window


def test_non_retryable_errors_do_not_count(store: BreakerStore) -> None:
    from aiorch.core.errors import ConfigurationError

    clock = FakeClock()
    breaker = _breaker(store, clock)
    for _ in range(4):
        with pytest.raises(ConfigurationError), breaker.guard():
            raise ConfigurationError("bad input says nothing about the dependency")
    assert breaker.state() is BreakerState.CLOSED


def test_operators_force_open_disable_and_reset(store: BreakerStore) -> None:
    clock = FakeClock()
    breaker = _breaker(store, clock)
    breaker.force("forced_open")
    clock.now += 3600
    with pytest.raises(CircuitOpenError, match="is forced_open"), breaker.guard():
        pass
    breaker.force("disabled")
    for _ in range(8):
        _fail(breaker)
    assert breaker.state() is BreakerState.DISABLED
    breaker.force("closed")
    _succeed(breaker)
    assert breaker.state() is BreakerState.CLOSED


def test_decorates_sync_and_async_functions(store: BreakerStore) -> None:
    import anyio

    clock = FakeClock()
    breaker = _breaker(store, clock)

    @breaker
    def double(value: int) -> int:
        return value * 2

    @breaker
    async def triple(value: int) -> int:
        return value * 3

    assert double(2) == 4
    assert anyio.run(triple, 2) == 6
    breaker.force("forced_open")
    with pytest.raises(CircuitOpenError):
        double(2)
    with pytest.raises(CircuitOpenError):
        anyio.run(triple, 2)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"failure_rate_threshold": 0}, "failure_rate_threshold"),
        ({"failure_rate_threshold": 101}, "failure_rate_threshold"),
        ({"window_size": 0}, "window_size"),
        ({"window_size": 5, "minimum_calls": 10}, "minimum_calls \\(10\\) is larger than"),
        ({"window": "sliding"}, "window"),
        ({"wait_seconds": -1}, "wait_seconds"),
        ({"permitted_calls_in_half_open": 0}, "permitted_calls_in_half_open"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_bad_configuration_names_the_field(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BreakerConfig(**settings)


def test_transitions_are_prefect_events(store: BreakerStore, prefect_api: str) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        f"events-{uuid4().hex[:8]}",
        BreakerConfig(window_size=2, minimum_calls=2, wait_seconds=5),
        store=store,
        clock=clock,
    )
    _fail(breaker)
    _fail(breaker)
    clock.now += 5
    _succeed(breaker)
    _succeed(breaker)  # default config: 10 probes; this breaker's window is smaller
    seen = poll_events(prefect_api, f"aiorch.breaker.{breaker.name}", count=2)
    assert [event["event"] for event in seen] == ["aiorch.breaker.open", "aiorch.breaker.half-open"]
    assert seen[0]["payload"] == {"breaker": breaker.name, "from": "closed", "to": "open"}


class LockProbingBreaker(CircuitBreaker):
    """A breaker that checks, as it emits each transition, whether the store is free."""

    lock_free_at_emit: list[bool]

    def _emit(self, previous: BreakerState, current: BreakerState) -> None:
        database = sqlite3.connect(str(self.store.engine.url.database), timeout=0)
        try:
            database.execute("BEGIN IMMEDIATE")  # fails at once if the lock is held
            database.execute("ROLLBACK")
            self.lock_free_at_emit.append(True)
        except sqlite3.OperationalError:
            self.lock_free_at_emit.append(False)
        finally:
            database.close()
        super()._emit(previous, current)


def test_transitions_are_emitted_after_the_store_is_unlocked(store: BreakerStore) -> None:
    # Prefect's first event in a process can take seconds (it connects, or starts an
    # ephemeral server): no process may wait for the store's lock meanwhile.
    clock = FakeClock()
    breaker = LockProbingBreaker(
        "emits",
        BreakerConfig(
            window_size=2, minimum_calls=2, wait_seconds=5, permitted_calls_in_half_open=1
        ),
        store=store,
        clock=clock,
    )
    breaker.lock_free_at_emit = []
    _fail(breaker)
    _fail(breaker)  # closed -> open
    clock.now += 5
    _succeed(breaker)  # open -> half-open, and the probe's success: half-open -> closed
    breaker.force("forced_open")
    assert breaker.lock_free_at_emit == [True, True, True, True]


def test_a_breaker_needs_a_name() -> None:
    with pytest.raises(ValueError, match="breaker name must be 1 to 200 characters"):
        CircuitBreaker("")


def test_operators_use_the_command_line_and_see_an_artifact(
    prefect_api: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from aiorch.cli import main

    name = f"cli-{uuid4().hex[:8]}"
    assert main(["breaker", name, "open", "--create"]) == 0
    assert f"breaker '{name}' is now forced_open" in capsys.readouterr().out
    with pytest.raises(CircuitOpenError), CircuitBreaker(name).guard():
        pass
    assert main(["breakers", "--artifact"]) == 0
    assert f"forced_open  {name}" in capsys.readouterr().out
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["aiorch-breakers"])),
        )
    assert any(name in json.dumps(artifact.data) for artifact in artifacts)
    assert main(["breaker", name, "close"]) == 0
    with CircuitBreaker(name).guard():
        pass


def test_a_probe_that_never_reports_frees_its_slot_when_its_lease_ends(
    store: BreakerStore,
) -> None:
    clock = FakeClock()
    breaker = _breaker(store, clock, permitted_calls_in_half_open=1, probe_lease_seconds=60)
    for _ in range(4):
        _fail(breaker)
    clock.now += 30
    lost = breaker.acquire()
    assert lost.probe  # its caller dies before recording anything
    refused = breaker.acquire()
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(60)
    clock.now += 60
    again = breaker.acquire()
    assert again.allowed
    assert again.probe
    breaker.record(again, failed=False, duration=0.1)
    assert breaker.state() is BreakerState.CLOSED


def _fail_after(action: Any) -> None:
    action()
    raise Boom


def _make_unreachable(store: BreakerStore, path: Path) -> Path:
    """Take the SQLite store away, as a database that went down: new connections fail."""
    store.engine.dispose()
    aside = path.with_name(path.name + "-aside")
    path.rename(aside)
    path.write_text("a file where the store's directory was")
    return aside


def test_an_unreachable_store_refuses_calls_but_keeps_outcomes_of_calls_made(
    scratch_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = scratch_dir / "store"
    home.mkdir()
    store = BreakerStore(f"sqlite:///{home / 'breakers.sqlite'}")
    clock = FakeClock()
    breaker = _breaker(store, clock, permitted_calls_in_half_open=1, probe_lease_seconds=60)
    calls: list[str] = []
    try:
        with breaker.guard():  # the permit is taken while the store answers...
            aside = _make_unreachable(store, home)
            calls.append("made")  # ...and the outcome cannot be recorded: not lost
        assert calls == ["made"]
        assert "the call's outcome (success) was not recorded" in caplog.text
        assert "circuit breaker store (sqlite, the SQLite store) is unavailable" in caplog.text

        with pytest.raises(BreakerStoreUnavailable) as refused, breaker.guard():
            calls.append("made while the store was down")
        assert calls == ["made"]  # fail closed: nothing is called
        assert refused.value.retryable
        assert refused.value.status == 503
        assert "OperationalError" not in type(refused.value).__name__

        home.unlink()
        aside.rename(home)
        with pytest.raises(Boom), breaker.guard():  # the call's own error, not the store's
            _fail_after(lambda: _make_unreachable(store, home))
        assert "the call's outcome (failure) was not recorded" in caplog.text
    finally:
        store.engine.dispose()


def test_a_store_url_that_cannot_connect_is_a_project_error(scratch_dir: Path) -> None:
    with pytest.raises(BreakerStoreUnavailable, match="is unavailable: OperationalError"):
        BreakerStore(f"sqlite:///{scratch_dir / 'no-such-dir' / 'breakers.sqlite'}")


def test_calls_cancelled_by_an_outer_timeout_count_as_failures(store: BreakerStore) -> None:
    clock = FakeClock()
    breaker = _breaker(store, clock)

    async def hangs() -> None:
        await asyncio.Event().wait()

    async def four_timeouts() -> None:
        for _ in range(4):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(breaker.call(hangs), timeout=0.05)

    asyncio.run(four_timeouts())
    assert breaker.state() is BreakerState.OPEN


def test_the_breakers_listing_shows_the_state_a_caller_meets(store: BreakerStore) -> None:
    clock = FakeClock()
    breaker = _breaker(store, clock)
    for _ in range(4):
        _fail(breaker)
    rows = {row["breaker"]: row["state"] for row in breaker_rows(store, now=clock.now + 29)}
    assert rows["dependency"] == "open"
    rows = {row["breaker"]: row["state"] for row in breaker_rows(store, now=clock.now + 30)}
    assert rows["dependency"] == "half_open"  # its wait is over: the next call probes
