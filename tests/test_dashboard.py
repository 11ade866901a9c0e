"""The performance dashboard reads recent runs and model usage, and draws its charts."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from uuid import UUID, uuid4

import anyio
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from aiorch.agent_blocks import Agent, ModelProvider
from aiorch.agent_blocks.provider import LOCAL_MODEL, LOCAL_MODEL_NAME, TokenPrice
from aiorch.flows.dashboard import DASHBOARD_KEY, performance_dashboard
from aiorch.tasks.agents.task import AgentResult, run_agent
from aiorch.tasks.monitoring.dashboard import ModelStats
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


@pytest.mark.logs_errors("RuntimeError")
def test_token_and_cost_totals_match_hand_computed_sums_on_the_real_model(
    prefect_api: str, local_model: str
) -> None:
    price = TokenPrice(input_per_million=1000.0, output_per_million=2000.0)
    agent = Agent(
        instruction="Answer in one short sentence.",
        model=LOCAL_MODEL,
        provider=ModelProvider(kind="local", prices={LOCAL_MODEL_NAME: price}),
        max_tokens=24,
    )
    results: list[AgentResult] = []
    attempts: list[int] = []
    tag = uuid4().hex[:8]  # prompts of their own: nothing replays from other tests

    @flow(name="dashboard-totals", retries=1)
    def asks() -> None:
        results.append(run_agent(agent, f"Name a colour ({tag})."))
        results.append(run_agent(agent, f"Name a fruit ({tag})."))
        if not attempts:
            attempts.append(1)
            raise RuntimeError("retry: both requests replay, at no new cost")

    def row() -> ModelStats:
        # Differences of two readings: the other tests' requests cancel out.
        models = {stats.model: stats for stats in anyio.run(performance_dashboard, 1.0).models}
        return models.get(LOCAL_MODEL) or ModelStats(
            model=LOCAL_MODEL,
            requests=0,
            replayed=0,
            input_tokens=0,
            output_tokens=0,
            median_latency_seconds=None,
            estimated_cost=None,
        )

    before = row()
    started = datetime.now(UTC)
    asks()
    fresh, replayed = results[:2], results[2:]
    assert [result.cache_hit for result in results] == [False, False, True, True]
    poll_events(prefect_api, None, count=4, names=["aiorch.model.usage"], since=started)

    input_tokens = sum(result.usage.input_tokens for result in fresh)
    output_tokens = sum(result.usage.output_tokens for result in fresh)
    assert input_tokens > 0
    assert output_tokens > 0
    assert sum(result.tokens_saved for result in replayed) == input_tokens + output_tokens
    expected_cost = input_tokens * 1000.0 / 1e6 + output_tokens * 2000.0 / 1e6
    assert sum(result.estimated_cost or 0 for result in fresh) == pytest.approx(expected_cost)

    after = row()
    assert (after.requests - before.requests, after.replayed - before.replayed) == (4, 2)
    assert after.input_tokens - before.input_tokens == input_tokens
    assert after.output_tokens - before.output_tokens == output_tokens
    assert (after.estimated_cost or 0) - (before.estimated_cost or 0) == pytest.approx(
        expected_cost
    )
