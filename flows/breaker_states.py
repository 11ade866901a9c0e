"""A flow that publishes the state of every circuit breaker as an artifact.

Schedule it (see ``prefect.yaml``) or run it with ``aiorch breakers --artifact``; the
Prefect UI shows the table under the key ``aiorch-breakers``.

Example:
    ```python
    from aiorch.flows.breaker_states import breaker_states

    print(breaker_states() is not None)  # True
    ```
"""

from __future__ import annotations

from uuid import UUID

from prefect import flow

from aiorch.tasks.resilience.breaker_report import publish_breaker_states


@flow(name="aiorch-breaker-states")
def breaker_states() -> UUID:
    """Publish the ``aiorch-breakers`` table artifact; its id."""
    return publish_breaker_states()
