"""The state of every breaker, as rows and as a Prefect table artifact.

Example:
    ```python
    from aiorch.tasks.resilience.breaker_report import breaker_rows

    print(type(breaker_rows()))  # <class 'list'>
    ```
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from uuid import UUID

from prefect.artifacts import create_table_artifact

from aiorch.tasks.resilience.breaker import effective_state
from aiorch.tasks.resilience.breaker_store import BreakerStore

BREAKERS_KEY = "aiorch-breakers"


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def breaker_rows(
    store: BreakerStore | None = None, now: float | None = None
) -> list[dict[str, str]]:
    """One row per breaker: name, effective state, when it opened, when it last changed.

    The state is what a caller would meet now: an open breaker whose wait is over shows
    ``half_open``, as its next call is a probe. (A breaker opened by an aiorch older than
    the stored reopening time shows ``open`` until its next call.)
    """
    rows = (store or BreakerStore.default()).states()
    moment = time.time() if now is None else now
    return [
        {
            "breaker": str(row["name"]),
            "state": effective_state(row, moment).value,
            "opened at": _when(row["opened_at"]),
            "updated at": _when(row["updated_at"]),
        }
        for row in sorted(rows, key=lambda row: str(row["name"]))
    ]


def publish_breaker_states(store: BreakerStore | None = None) -> UUID:
    """Publish the table as the keyed artifact ``aiorch-breakers``; its id.

    Call it inside a flow or task run (``flows/breaker_states.py`` is such a flow).
    """
    rows = breaker_rows(store)
    artifact: UUID = create_table_artifact(  # type: ignore[assignment]
        key=BREAKERS_KEY,
        table=rows,
        description=f"State of {len(rows)} circuit breaker(s)",
        _sync=True,  # type: ignore[call-arg]
    )
    return artifact
