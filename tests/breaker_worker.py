"""One process's use of a shared breaker, run by the cross-process tests.

    python -m tests.breaker_worker URL NAME fail N      # record N failed calls
    python -m tests.breaker_worker URL NAME probe       # try to take a half-open probe
    python -m tests.breaker_worker URL NAME hold LEASE  # take a probe, then wait to be killed

Prints one JSON line: the state afterwards, and whether a probe was granted.
"""

from __future__ import annotations

import json
import sys

from aiorch.tasks.resilience.breaker import BreakerConfig, CircuitBreaker
from aiorch.tasks.resilience.breaker_store import BreakerStore

CONFIG = BreakerConfig(
    window_size=4, minimum_calls=4, wait_seconds=0, permitted_calls_in_half_open=1
)


def main(argv: list[str]) -> None:
    """Act on the breaker as the arguments say."""
    url, name, action, *rest = argv
    store = BreakerStore(url)
    breaker = CircuitBreaker(name, CONFIG, store=store)
    granted = False
    if action == "fail":
        for _ in range(int(rest[0])):
            breaker.record(breaker.acquire(), failed=True, duration=0.01)
    elif action == "hold":
        holder = CircuitBreaker(
            name, CONFIG.model_copy(update={"probe_lease_seconds": float(rest[0])}), store=store
        )
        print(json.dumps({"granted": holder.acquire().allowed}), flush=True)
        sys.stdin.read()  # until the test kills this process (or closes stdin)
        return
    else:
        granted = breaker.acquire().allowed
    print(json.dumps({"state": breaker.state().value, "granted": granted}))


if __name__ == "__main__":
    main(sys.argv[1:])
