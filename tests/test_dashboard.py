"""The performance dashboard reads recent runs and model usage, and draws its charts."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from uuid import UUID

import anyio
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from aiorch.agent_blocks import Agent
from aiorch.flows.dashboard import DASHBOARD_KEY, performance_dashboard
from aiorch.tasks.agents.task import AgentResult, run_agent
from aiorch.testing.prefect_server import poll_events

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.logs_errors("RuntimeError")
def test_the_dashboard_shows_flows_tasks_models_and_charts(prefect_api: str) -> None:
    agent = Agent(instruction="x", model="passthrough")

    @flow(name="dashboard-sample")
    def sample() -> AgentResult:
        result: AgentResult = run_agent(agent, "***FIXED_RESPONSE charted")
        return result

    @flow(name="dashboard-sample-retried", retries=1)
    def replayed() -> None:
        run_agent(agent, "***FIXED_RESPONSE replayed")
        if not attempts:
            attempts.append(1)
            raise RuntimeError("retry so the request replays")

    attempts: list[int] = []
    # The usage events reach the server in the background; the dashboard reads them.
    started = datetime.now(UTC)
    sample()
    replayed()
    usage = poll_events(prefect_api, None, count=3, names=["aiorch.model.usage"], since=started)
    assert len(usage) >= 3

    dashboard = anyio.run(performance_dashboard, 1.0)
    flows = {stats.flow: stats for stats in dashboard.flows}
    assert flows["dashboard-sample"].runs >= 1
    kinds = {stats.kind: stats for stats in dashboard.kinds}
    assert kinds["model request"].cached >= 1
    models = {stats.model: stats for stats in dashboard.models}
    assert models["passthrough"].requests >= 3
    assert models["passthrough"].replayed >= 1

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[DASHBOARD_KEY]))
        )
    markdown = str(artifacts[-1].data)
    assert "| dashboard-sample |" in markdown
    assert "| passthrough |" in markdown
    images = markdown.split("](data:image/png;base64,")[1:]
    assert len(images) == 3
    for image in images:
        assert base64.b64decode(image.split(")", 1)[0]).startswith(PNG_SIGNATURE)
    assert UUID(str(artifacts[-1].flow_run_id))
