"""The cost of a closed circuit breaker per call, on each store.

A bare function call vs the same call through a closed breaker, per store (SQLite file;
PostgreSQL started from Debian's binaries when installed). Each sample is the mean of
``CALLS`` calls, since one call is far below the clock's useful resolution.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from bench.harness import Comparison, NotRun, Row, Side, interleave
from tasks.resilience.breaker import BreakerConfig, CircuitBreaker
from tasks.resilience.breaker_store import BreakerStore

CALLS = 200


def _work() -> int:
    return sum(range(100))


def _per_call(action: Callable[[], object]) -> Callable[[], float]:
    def sample() -> float:
        started = time.perf_counter()
        for _ in range(CALLS):
            action()
        return (time.perf_counter() - started) / CALLS

    return sample


def run(repeat: int) -> list[Row]:
    """A closed breaker on SQLite and on PostgreSQL, each against a bare call."""
    from tests.postgres import postgres_bin, running_postgres

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
    return rows
