"""A flow that compares two flow runs and publishes the comparison as an artifact.

The artifact is keyed ``<flow>-run-comparison`` after the compared flow, and lives on
this flow's run; the command line prints the same table.

Example:
    ```bash
    aiorch compare 3f2a6c1e-... 9c41d0b7-...
    ```
"""

from __future__ import annotations

from uuid import UUID

from prefect import flow
from prefect.runtime import flow_run

from aiorch.tasks.artifacts import publish_artifact
from aiorch.tasks.monitoring.compare import RunComparison, compare_runs, render_comparison
from aiorch.tasks.monitoring.run_report import artifact_key


@flow(name="aiorch-compare-runs")
async def compare_runs_flow(before: UUID, after: UUID) -> RunComparison:
    """Compare two runs; publish ``<flow>-run-comparison`` on this run."""
    comparison = await compare_runs(before, after)
    await publish_artifact(
        "markdown",
        key=artifact_key(comparison.after.flow_name, "run-comparison"),
        data=render_comparison(comparison),
        description=f"{comparison.before.name} vs {comparison.after.name}",
        flow_run_id=UUID(flow_run.get_id()),
    )
    return comparison
