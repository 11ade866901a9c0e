"""The performance dashboard as a schedulable flow (``prefect.yaml``: hourly).

Publishes ``aiorch-performance-dashboard``: workflow statistics, task statistics by
kind, agent usage per model, and charts (see :mod:`aiorch.tasks.monitoring.dashboard`).

Example:
    ```python
    import anyio

    from aiorch.flows.dashboard import performance_dashboard

    stats = anyio.run(performance_dashboard, 1)
    print(type(stats.flows))  # <class 'list'>
    ```
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated
from uuid import UUID

from prefect import flow
from prefect.runtime import flow_run
from pydantic import Field

from aiorch.tasks.artifacts import publish_artifact
from aiorch.tasks.monitoring.dashboard import Dashboard, collect, render_dashboard

DASHBOARD_KEY = "aiorch-performance-dashboard"


@flow(name="aiorch-performance-dashboard")
async def performance_dashboard(
    hours: Annotated[float, Field(gt=0, le=24 * 31, description="Window to look back.")] = 24,
    limit: Annotated[int, Field(ge=1, le=1000, description="Most flow runs to read.")] = 200,
) -> Dashboard:
    """Collect the window's statistics and publish the dashboard artifact."""
    dashboard = await collect(timedelta(hours=hours), limit)
    await publish_artifact(
        "markdown",
        key=DASHBOARD_KEY,
        data=render_dashboard(dashboard),
        description=f"Performance of the last {hours:g} h",
        flow_run_id=UUID(flow_run.get_id()),
    )
    return dashboard
