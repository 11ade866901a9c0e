"""The cost of a closed circuit breaker per call, on each store.

A bare function call vs the same call through a closed breaker, per store (SQLite file;
PostgreSQL started from Debian's binaries when installed). Each sample is the mean of
``CALLS`` calls, since one call is far below the clock's useful resolution.

Then ``PROCESSES`` processes sharing one SQLite breaker: a healthy dependency, whose
successes land in a count window full of successes and write nothing, vs one failing
one call in ``FAIL_EVERY``, whose window always holds a failure, so every call is
written under the store's write lock.
"""

from __future__ import annotations

import multiprocessing
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

from aiorch.tasks.resilience.breaker import BreakerConfig, CircuitBreaker
from aiorch.tasks.resilience.breaker_store import BreakerStore
from bench.harness import Comparison, NotRun, Row, Side, interleave

CALLS = 200
PROCESSES = 4
FAIL_EVERY = 10
# aiorch's own breakers' window (DEPENDENCY_BREAKER), opening only at 100 %.
SHARED_CONFIG = BreakerConfig(window_size=20, minimum_calls=5, failure_rate_threshold=100)
_worker_stores: dict[str, BreakerStore] = {}


def _work() -> int:
    return sum(range(100))


def _per_call(action: Callable[[], object]) -> Callable[[], float]:
    def sample() -> float:
        started = time.perf_counter()
        for _ in range(CALLS):
            action()
        return (time.perf_counter() - started) / CALLS

    return sample


class _Flaky(Exception):
    """The failure of one call in ``FAIL_EVERY`` on the flaky side."""


def _calls_in_one_process(url: str, name: str, fail_every: int, start: Any) -> float:
    """Seconds per call of CALLS guarded calls, started together with the other workers.

    Every ``fail_every``-th call fails (0: none), which keeps a failure in the window.
    """
    store = _worker_stores.setdefault(url, BreakerStore(url))
    breaker = CircuitBreaker(name, SHARED_CONFIG, store=store)
    start.wait()
    started = time.perf_counter()
    for call in range(1, CALLS + 1):
        try:
            with breaker.guard():
                _work()
                if fail_every and call % fail_every == 0:
                    raise _Flaky
        except _Flaky:
            pass
    return (time.perf_counter() - started) / CALLS


def _contended(pool: Pool, start: Any, url: str, name: str, fail_every: int) -> Callable[[], float]:
    def sample() -> float:
        pending = [
            pool.apply_async(_calls_in_one_process, (url, name, fail_every, start))
            for _ in range(PROCESSES)
        ]
        return sum(result.get() for result in pending) / PROCESSES

    return sample


def _shared_sqlite(folder: Path, repeat: int) -> Row:
    url = f"sqlite:///{folder / 'shared.sqlite'}"
    # Spawned, not forked: the parent holds Prefect's threads and the stores' connections.
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(PROCESSES) as pool:
        start = manager.Barrier(PROCESSES)
        written, skipped = interleave(
            _contended(pool, start, url, "bench-flaky", FAIL_EVERY),
            _contended(pool, start, url, "bench-healthy", 0),
            repeat,
        )
    return Comparison(
        benchmark=f"Closed breaker, SQLite store, {PROCESSES} processes at once",
        baseline=Side(label=f"1 call in {FAIL_EVERY} fails: every call written", samples=written),
        candidate=Side(label="all succeed: full window, nothing written", samples=skipped),
        note="time per call, mean over the processes",
    )


def run(repeat: int) -> list[Row]:
    """A closed breaker on SQLite and on PostgreSQL, each against a bare call."""
    from aiorch.testing.postgres import postgres_bin, running_postgres

    config = BreakerConfig(window_size=100, minimum_calls=10)
    rows: list[Row] = []
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        stores = {"SQLite": BreakerStore(f"sqlite:///{folder / 'bench.sqlite'}")}
        if postgres_bin() is not None:
            stores["PostgreSQL"] = BreakerStore(stack.enter_context(running_postgres()))
        else:
            rows.append(
                NotRun(benchmark="Closed breaker, PostgreSQL", reason="PostgreSQL not installed")
            )
        for kind, store in stores.items():
            breaker = CircuitBreaker(f"bench-{kind}", config, store=store)
            bare, guarded = interleave(_per_call(_work), _per_call(breaker(_work)), repeat)
            row = Comparison(
                benchmark=f"Closed breaker, {kind} store",
                baseline=Side(label="bare call", samples=bare),
                candidate=Side(label="through the breaker", samples=guarded),
            )
            rows.append(row.model_copy(update={"note": f"{row.extra * 1000:.2f} ms per call"}))
            store.engine.dispose()
        rows.append(_shared_sqlite(folder, repeat))
    return rows
