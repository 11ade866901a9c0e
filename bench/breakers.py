"""The cost of a closed circuit breaker per call, on each store, side by side.

Interleaves, in one run: a bare function call, the same call through a closed breaker
on the SQLite store, and (when ``--postgres URL`` is given, or a PostgreSQL server can
be started here) on PostgreSQL. Prints medians per call and the extra cost.

    .venv/bin/python -m bench.breakers [--calls 200] [--postgres postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from tasks.resilience.breaker import BreakerConfig, CircuitBreaker
from tasks.resilience.breaker_store import BreakerStore

ROUNDS = 5


def _work() -> int:
    return sum(range(100))


def _per_call(action: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        action()
    return (time.perf_counter() - started) / calls


@contextmanager
def _postgres(url: str | None) -> Iterator[str | None]:
    if url is not None:
        yield url
        return
    try:
        from tests.postgres import postgres_bin, running_postgres
    except ImportError:
        yield None
        return
    if postgres_bin() is None:
        yield None
        return
    with running_postgres() as started:
        yield started


def main() -> None:
    """Measure and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--postgres", help="SQLAlchemy URL of a PostgreSQL database")
    arguments = parser.parse_args()
    config = BreakerConfig(window_size=100, minimum_calls=10)
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        stores = {"sqlite": BreakerStore(f"sqlite:///{folder / 'bench.sqlite'}")}
        postgres_url = stack.enter_context(_postgres(arguments.postgres))
        if postgres_url:
            stores["postgresql"] = BreakerStore(postgres_url)
        cases: dict[str, Callable[[], object]] = {"no breaker": _work}
        for kind, store in stores.items():
            breaker = CircuitBreaker(f"bench-{kind}", config, store=store)
            cases[f"closed breaker, {kind}"] = breaker(_work)
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(ROUNDS):
            for name, action in cases.items():
                samples[name].append(_per_call(action, arguments.calls))
        for store in stores.values():
            store.engine.dispose()
    base = statistics.median(samples["no breaker"])
    print("| case | median per call | extra per call |")
    print("|---|---|---|")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"| {name} | {median * 1e3:.3f} ms | {(median - base) * 1e3:.3f} ms |")
    if "postgresql" not in stores:
        print("\nPostgreSQL not measured: install it or pass --postgres URL")


if __name__ == "__main__":
    main()
