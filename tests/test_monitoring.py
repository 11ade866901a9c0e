"""Run reports, dependency diagrams, timelines and live progress, through a real server."""

from __future__ import annotations

import base64
import json
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import anyio
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from prefect.runtime import flow_run

from aiorch.flows.demo import PROGRESS_KEY, demo_flow
from aiorch.tasks.container import ContainerStep, run_step
from aiorch.tasks.container.errors import StepFailed
from aiorch.tasks.monitoring.run_report import (
    artifact_key,
    dependency_diagram,
    publish_run_report,
    timeline_bars,
    timeline_chart,
)
from aiorch.tasks.monitoring.runs import RunView, TaskRunView, read_run
from aiorch.tasks.resilience.report import flow_run_problems


def _artifacts(run_id: UUID) -> dict[str, Any]:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    decoded: dict[str, Any] = {}
    for artifact in artifacts:
        if artifact.key:
            data = artifact.data
            # Table and progress data come back JSON-encoded; markdown stays text.
            if artifact.type != "markdown" and isinstance(data, str):
                data = json.loads(data)
            decoded[artifact.key] = data
    return decoded


def _view(name: str, state: str, start: int, end: int, upstream: list[UUID]) -> TaskRunView:
    origin = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    return TaskRunView(
        id=uuid4(),
        name=name,
        task_key=f"key-{name}",
        dynamic_key="0",
        kind="step" if name.startswith("step") else "task",
        state=state,
        start=origin + timedelta(seconds=start),
        end=origin + timedelta(seconds=end),
        attempts=1,
        cache_hit=state == "Cached",
        tags=[],
        detail="docker",
        upstream=upstream,
    )


def test_diagrams_show_dependencies_states_and_times() -> None:
    first = _view("step-a", "Cached", 0, 1, [])
    second = _view("step-b", "Failed", 1, 3, [first.id])
    run = RunView(
        id=uuid4(),
        name="brisk-otter",
        flow_name="nightly build",
        state="Failed",
        start=first.start,
        end=second.end,
        tasks=[first, second],
    )
    graph = dependency_diagram(run)
    assert graph.startswith("flowchart LR")
    assert 't0["step-a<br/>Cached"]' in graph
    assert "t0 --> t1" in graph
    assert "class t1 failed" in graph
    bars = timeline_bars(run)
    assert [(bar.label, bar.state) for bar in bars] == [
        ("step-a (step)", "Cached"),
        ("step-b (step)", "Failed"),
    ]
    assert [(bar.offset_seconds, bar.duration_seconds) for bar in bars] == [(0, 1), (1, 2)]
    chart = timeline_chart(run)
    assert chart is not None
    assert chart.startswith("data:image/png;base64,")
    width, height = struct.unpack(">II", base64.b64decode(chart.split(",", 1)[1])[16:24])
    assert width >= 600, width
    assert height >= 100, height
    assert artifact_key("Nightly Build!", "run-report") == "nightly-build-run-report"


def test_the_demo_publishes_its_report_table_and_progress(prefect_api: str) -> None:
    state = demo_flow(
        text="a b\nc d\ne f\n", chunk_lines=1, agent_model="passthrough", return_state=True
    )
    assert state.is_completed(), state.message
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    artifacts = _artifacts(run_id)
    report = str(artifacts["aiorch-demo-run-report"])
    assert "# Run report: aiorch-demo /" in report
    assert "State **Completed**" in report
    assert "```mermaid\nflowchart LR" in report
    assert "## Timeline\n\n![Timeline of the task runs](data:image/png;base64," in report
    assert "| count-words-" in report
    rows = artifacts["aiorch-demo-run-table"]
    assert sum(1 for row in rows if row["task"].startswith("count-words")) == 3
    assert any(row["kind"] == "agent call" for row in rows)
    assert all(row["state"] in {"Completed", "Cached"} for row in rows)
    assert artifacts[PROGRESS_KEY] == 100.0


@pytest.mark.logs_errors("StepFailed")
def test_a_failed_runs_report_shows_the_log_tail(prefect_api: str) -> None:
    step = ContainerStep(
        name=f"breaks-{uuid4().hex[:6]}",
        image="busybox",
        commands=[["sh", "-c", "echo compiling; echo 'error: missing semicolon' >&2; exit 2"]],
    )
    ids: list[UUID] = []

    steady = ContainerStep(name=f"fine-{uuid4().hex[:6]}", image="busybox", commands=[["true"]])

    @flow(name="monitoring-failure-test", on_failure=[publish_run_report])
    def broken() -> None:
        ids.append(UUID(flow_run.get_id()))
        run_step(steady, "local", cache=False)
        run_step(step, "local", cache=False)

    with pytest.raises(StepFailed):
        broken()
    report = str(_artifacts(ids[0])["monitoring-failure-test-run-report"])
    assert "State **Failed**" in report
    # Two steps, each an outer task and its execution; the broken step's two failed.
    assert "4 task runs, 0 from cache, 2 failed." in report
    assert f"### {step.name} (Failed)" in report
    assert "error: missing semicolon" in report
    assert "| local |" in report  # the runner, from the execution's run name


@pytest.mark.logs_errors("StepFailed")
def test_a_failure_a_flow_retry_fixed_reads_as_recovered(
    prefect_api: str, scratch_dir: Path
) -> None:
    marker = scratch_dir / "failed-once"
    step = ContainerStep(
        name=f"flaky-{uuid4().hex[:6]}",
        image="busybox",
        commands=[["sh", "-c", f"[ -e {marker} ] || {{ touch {marker}; exit 3; }}"]],
    )
    steady = ContainerStep(name=f"steady-{uuid4().hex[:6]}", image="busybox", commands=[["true"]])
    ids: list[UUID] = []

    @flow(
        name="monitoring-recovery-test",
        retries=1,
        retry_delay_seconds=0,
        on_completion=[publish_run_report],
    )
    def recovers() -> None:
        ids.append(UUID(flow_run.get_id()))
        run_step(steady, "local", cache=False)
        run_step(step, "local", cache=False)

    recovers()
    run = anyio.run(read_run, ids[0])
    # Attempt 1's step and its execution failed; attempt 2 ran both again successfully.
    recovered = sorted(task.name for task in run.tasks if task.recovered)
    assert recovered == [step.name, f"{step.name}-execute-local"]
    assert sum(task.state == "Failed" for task in run.tasks) == 2
    report = str(_artifacts(ids[0])["monitoring-recovery-test-run-report"])
    assert "0 failed, 2 recovered by a retry" in report
    assert "No task run failed." in report
    assert "## Recovered by a retry" in report
    assert "| Failed (recovered) |" in report
    # The step's failure report is superseded by one saying it recovered.
    with get_client(sync_client=True) as client:
        reports = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["aiorch-failure"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[ids[0]]),
            ),
        )
    texts = [str(artifact.data) for artifact in reports]
    assert any(text.startswith(f"# Recovered: {step.name}") for text in texts), texts
    assert "attempt 2 of the flow run ran it again successfully" in "".join(texts)
    # The run's failure summary no longer lists it.
    assert anyio.run(flow_run_problems, ids[0]) == []


def test_two_runs_are_compared_from_a_flow_and_the_command_line(
    prefect_api: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from aiorch.cli import main

    suffix = uuid4().hex[:6]

    def steps(second: str) -> list[ContainerStep]:
        return [
            ContainerStep(name=f"same-{suffix}", image="busybox", commands=[["echo", "a"]]),
            ContainerStep(name=f"edited-{suffix}", image="busybox", commands=[["echo", second]]),
        ]

    @flow(name="monitoring-compare-test")
    def build(second: str) -> UUID:
        for step in steps(second):
            run_step(step, "local")
        return UUID(flow_run.get_id())

    before, after = build("one"), build("two")
    assert main(["compare", str(before), str(after)]) == 0
    table = capsys.readouterr().out
    assert "# Run comparison: monitoring-compare-test" in table
    assert f"| same-{suffix}-execute-local | step execution | Completed -> Cached |" in table
    assert "| no -> yes | same |" in table
    edited = next(
        line for line in table.splitlines() if f"| edited-{suffix}-execute-local |" in line
    )
    assert edited.endswith("| no -> no | changed |")
    assert main(["compare", "not-a-run", str(after)]) == 2
