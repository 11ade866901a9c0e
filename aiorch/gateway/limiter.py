"""Failed sign-ins per client, counted in a sliding window, and the lock-out they earn.

A client (its address) with ``max_failures`` failed attempts within ``window_seconds``
is answered 429 with ``Retry-After`` until the oldest of them leaves the window, whatever
it sends meanwhile, so a guesser gets a handful of tries a minute. Counts live in the
gateway process: several gateways behind a balancer each count their own.

Example:
    ```python
    from aiorch.gateway.limiter import FailureLimiter

    limiter = FailureLimiter(max_failures=2, window_seconds=60)
    limiter.failed("10.0.0.9", now=0.0)
    limiter.failed("10.0.0.9", now=1.0)
    print(limiter.retry_after("10.0.0.9", now=2.0))  # 58
    ```
"""

from __future__ import annotations

import math
from collections import deque


class FailureLimiter:
    """Recent failed attempts per client, oldest first."""

    def __init__(self, max_failures: int, window_seconds: float) -> None:
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float]:
        failures = self._failures.get(client)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window_seconds:
            failures.popleft()
        if not failures:
            # Forgotten once quiet: a scan of many addresses leaves nothing behind.
            del self._failures[client]
        return failures

    def failed(self, client: str, now: float) -> None:
        """Count a failed attempt of ``client``."""
        self._recent(client, now)
        failures = self._failures.setdefault(client, deque())
        failures.append(now)
        # Only the newest max_failures matter for the lock-out.
        while len(failures) > self.max_failures:
            failures.popleft()

    def retry_after(self, client: str, now: float) -> int | None:
        """Whole seconds ``client`` must wait; None when it may try now."""
        failures = self._recent(client, now)
        if len(failures) < self.max_failures:
            return None
        return max(1, math.ceil(failures[0] + self.window_seconds - now))
