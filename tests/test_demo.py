"""The demo flow, in-process against a real server and end to end as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from uuid import UUID

import docker
import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.exceptions import ParameterTypeError

from aiorch.core.local_server import LocalServer
from aiorch.core.services import free_port
from aiorch.deploy.images import BUSYBOX_IMAGE
from aiorch.flows.agent_team import TeamResult
from aiorch.flows.data_pipeline import PipelineResult
from aiorch.flows.demo import (
    ARTIFACT_KEY,
    AgentStep,
    WordStats,
    demo_agent,
    demo_flow,
    render_report,
    ui_instructions,
)
from aiorch.tasks.agents.task import AgentResult
from aiorch.tasks.agents.usage import TokenUsage
from aiorch.tasks.container.select import RunnerStatus
from aiorch.tasks.platform import PlatformSurvey
from tests.processes import wait_until_gone

ROOT = Path(__file__).resolve().parents[1]
DEMO_DEADLINE_SECONDS = 300


def _artifact_markdown(run_id: UUID) -> str:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[ARTIFACT_KEY]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
            )
        )
    assert len(artifacts) == 1
    assert artifacts[0].type == "markdown"
    return str(artifacts[0].data)


def test_demo_flow_fans_out_and_publishes_its_report(prefect_api: str) -> None:
    state = demo_flow(text="a b b\nc c c\nd\n", chunk_lines=1, top=2, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    assert result.flow_run_id == run_id
    assert result.stats == WordStats(chunks=3, words=7, distinct=4, top=[("c", 3), ("b", 2)])

    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )
    names = sorted(run.name.rsplit("-", 1)[0] for run in task_runs)
    assert names.count("count-words") == 3
    assert {"survey-platform", "merge-counts", "agent-call", "publish-report"} <= set(names)
    assert all(run.state is not None and run.state.is_completed() for run in task_runs)

    markdown = _artifact_markdown(run_id)
    assert f"Flow run `{run_id}` ran 7 tasks." in markdown
    assert "merge --> agent[agent-call] --> report" in markdown
    assert f"| agent-call | {result.agent.result.model} answered in" in markdown
    assert result.pipeline.regions
    assert "container steps on the local runner" in markdown
    assert "pipeline[[aiorch-data-pipeline subflow]] --> report" in markdown
    assert "```mermaid\nflowchart LR" in markdown
    assert "count2[count-words 2] --> merge[merge-counts]" in markdown
    assert "| c | 3 |" in markdown
    assert prefect_api in markdown  # the survey names the API the run reported to


@pytest.mark.parametrize(
    ("parameters", "name"),
    [({"top": 0}, "top"), ({"chunk_lines": -1}, "chunk_lines"), ({"text": ""}, "text")],
)
@pytest.mark.logs_errors("Parameter validation failed", "Validation of flow parameters failed")
def test_invalid_parameters_are_rejected_by_name(
    prefect_api: str, parameters: dict[str, object], name: str
) -> None:
    with pytest.raises(ParameterTypeError, match=f"invalid parameters:\n - {name}: "):
        demo_flow(**parameters)  # type: ignore[call-overload]


def test_report_escapes_table_cells() -> None:
    survey = PlatformSurvey(
        python="3.13.0",
        packages={"prefect": "3.9.1"},
        prefect_api="http://x/api",
        runners=[RunnerStatus(kind="docker", available=False, detail="a | b\nc")],
    )
    stats = WordStats(chunks=1, words=1, distinct=1, top=[("w", 1)])
    pipeline = PipelineResult(regions=[], summary_csv=Path("x.csv"), steps=[])
    agent = AgentStep(
        result=AgentResult(
            text="a | b",
            model="passthrough",
            stop_reason="endTurn",
            usage=TokenUsage(),
            latency_seconds=0.1,
            history_json='{"messages": []}',
        ),
        notice="not installed",
    )
    team = TeamResult(drafts=["x", "y"], review="draft | 1")
    markdown = render_report(UUID(int=1), survey, stats, agent, pipeline, team)
    assert "answered in 0.10 s (0 tokens): a \\| b |" in markdown
    assert "2 writers drafted over the message bus; the reviewer said: draft \\| 1 |" in markdown
    assert "> **Notice:** not installed" in markdown
    assert "| docker | no | a \\| b c |" in markdown


def test_the_demo_agent_is_the_local_model_when_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("aiorch.flows.demo.local_model_installed", lambda: True)
    agent, notice = demo_agent("auto")
    assert (agent.model, notice) == ("generic.smollm2", None)
    monkeypatch.setattr("aiorch.flows.demo.local_model_installed", lambda: False)
    agent, notice = demo_agent("auto")
    assert agent.model == "passthrough"
    assert notice is not None
    assert "install the 'model' extra" in notice
    agent, notice = demo_agent("passthrough")
    assert (agent.model, notice) == ("passthrough", None)


def test_ui_link_points_at_the_configured_server(prefect_api: str) -> None:
    run_id = UUID(int=7)
    text = ui_instructions(run_id, None)
    assert text.endswith(f"{prefect_api.removesuffix('/api')}/v2/runs/flow-run/{run_id}")


def test_demo_command_end_to_end_on_a_shared_local_server(
    scratch_dir: Path, docker_client: docker.DockerClient
) -> None:
    home = scratch_dir / "prefect-home"
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "AIORCH_UI_PORT": str(port)}
    env.pop("PREFECT_API_URL", None)
    had_image = bool(docker_client.images.list(name=BUSYBOX_IMAGE))
    server = LocalServer(home, port=port)
    try:
        demo = subprocess.run(
            [str(ROOT / "scripts" / "demo")],
            env=env,
            capture_output=True,
            text=True,
            timeout=DEMO_DEADLINE_SECONDS,
        )
        output = demo.stdout + demo.stderr
        assert demo.returncode == 0, output
        assert "environment up to date" in demo.stderr  # set up already: no reinstall
        assert " ERROR " not in output, output
        assert "container steps run in Docker" in demo.stdout
        run_id = UUID(re.search(r"^flow run id: (\S+)$", demo.stdout, flags=re.M).group(1))  # type: ignore[union-attr]
        assert re.search(r"^agent \(\S+\): \S", demo.stdout, flags=re.M), demo.stdout
        assert re.search(r"^container steps: \d+ \(\d+ on docker\)", demo.stdout, flags=re.M)
        link = f"http://127.0.0.1:{port}/v2/runs/flow-run/{run_id}"
        assert f"See the run in the Prefect UI: {link}" in demo.stdout

        # The server the demo started is still up, on the same data, for the link.
        state = server.running()
        assert state is not None
        assert state.api_url == f"http://127.0.0.1:{port}/api"
        flow_run = httpx.get(f"{state.api_url}/flow_runs/{run_id}", timeout=10)
        assert flow_run.json()["state_type"] == "COMPLETED"
        artifacts = httpx.post(
            f"{state.api_url}/artifacts/filter",
            json={"artifacts": {"flow_run_id": {"any_": [str(run_id)]}}},
            timeout=10,
        )
        keys = {artifact["key"] for artifact in artifacts.json()}
        assert {ARTIFACT_KEY, "aiorch-demo-run-report", "aiorch-demo-run-table"} <= keys, output
        # A browser gets the UI app there (the browser test checks what it renders).
        page = httpx.get(link, headers={"Accept": "text/html"}, timeout=10)
        assert page.status_code == 200
        assert "<html" in page.text.lower()
        print(demo.stdout)
        assert (home / "prefect.db").exists(), "the server did not use PREFECT_HOME"
    finally:
        running = server.running()
        assert server.stop() == (running is not None)
        if running is not None:
            wait_until_gone({running.supervisor_pid}, deadline_seconds=30)
        if not had_image:
            docker_client.images.remove(BUSYBOX_IMAGE, force=True)
