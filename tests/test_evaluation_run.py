"""Evaluations as Prefect flows on a real server: answers as cached task runs, resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterId,
    TaskRunFilter,
    TaskRunFilterName,
)

from aiorch.agent_blocks import Agent
from aiorch.core.errors import ConfigurationError
from aiorch.tasks.evaluation.datasets import load_dataset
from aiorch.tasks.evaluation.run import DEFAULT_CHECKS, Evaluation, aevaluate
from aiorch.tasks.evaluation.samples import Check

ECHO_SET = "\n".join(
    [
        '{"id": "says-paris", "input": "Paris is the answer", "target": "paris"}',
        '{"id": "says-lima", "input": "The answer: Lima", "target": "Lima"}',
        '{"id": "no-answer", "input": "What is the capital of Japan?", "target": "Tokyo"}',
    ]
)


def _echo() -> Agent:
    return Agent(instruction="Repeat the user.", model="passthrough")


async def _answer_runs(flow_run_id: str, expected: int) -> list[str]:
    """The flow run's answer task runs as ``name=state``, once all are final on the server."""
    runs: list[str] = []
    # Task-run states reach the server as events, a little after the flow returns.
    with anyio.move_on_after(30):
        while True:
            async with get_client() as client:
                found = await client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                    task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="passthrough ·")),
                )
            runs = sorted(f"{run.name}={run.state_name}" for run in found)
            if len(runs) == expected and all(run.state and run.state.is_final() for run in found):
                return runs
            await anyio.sleep(0.2)
    return runs


def test_an_evaluation_scores_every_sample_and_epoch_and_replays_on_a_rerun(
    prefect_api: str, tmp_path: Path
) -> None:
    path = tmp_path / "echo.jsonl"
    path.write_text(ECHO_SET)
    dataset = load_dataset(path)

    @flow(name="aiorch-test-evaluation")
    async def evaluation(checks: list[Check] | None = None) -> Evaluation:
        return await aevaluate(
            dataset,
            [_echo()],
            epochs=2,
            name=f"echo-{tmp_path.name}",
            ks=(1, 2),
            default_checks=checks or DEFAULT_CHECKS,
        )

    first = anyio.run(evaluation)
    metrics = first.agents[0]
    assert metrics.agent == "passthrough"
    assert (metrics.samples, metrics.results, metrics.epochs) == (3, 6, 2)
    assert metrics.mean == pytest.approx(2 / 3)
    assert metrics.accuracy == pytest.approx(2 / 3)
    assert metrics.pass_at_k == {1: pytest.approx(2 / 3), 2: pytest.approx(2 / 3)}
    assert metrics.flaky == []
    assert metrics.cache_hits == 0
    failed = [r for r in first.results if not r.passed]
    assert {r.sample_id for r in failed} == {"no-answer"}
    assert failed[0].scores[0].reason == "does not contain 'Tokyo'"
    assert first.flow_run_id is not None
    runs = anyio.run(_answer_runs, first.flow_run_id, 6)
    assert len(runs) == 6
    assert all(run.endswith("=Completed") for run in runs)
    assert "passthrough · says-lima · epoch 2=Completed" in runs

    # Run again with other checks: every answer replayed, only the scores change.
    again = anyio.run(evaluation, [Check(type="exact", options={"ignore_case": True})])
    assert again.agents[0].cache_hits == 6
    assert again.agents[0].cost == 0.0
    assert again.agents[0].mean == 0.0  # the echoes hold the targets, none is one
    assert again.flow_run_id is not None
    replayed = anyio.run(_answer_runs, again.flow_run_id, 6)
    assert len(replayed) == 6
    assert all(run.endswith("=Cached") for run in replayed)


def test_a_changed_agent_is_answered_again(prefect_api: str, tmp_path: Path) -> None:
    path = tmp_path / "echo.jsonl"
    path.write_text(ECHO_SET)
    dataset = load_dataset(path)

    @flow(name="aiorch-test-evaluation")
    async def evaluation(instruction: str) -> Evaluation:
        agent = Agent(instruction=instruction, model="passthrough")
        return await aevaluate(dataset, [agent], name=f"changed-{tmp_path.name}")

    assert anyio.run(evaluation, "Repeat the user.").agents[0].cache_hits == 0
    assert anyio.run(evaluation, "Repeat the user.").agents[0].cache_hits == 3
    assert anyio.run(evaluation, "Repeat the user, please.").agents[0].cache_hits == 0


@pytest.mark.logs_errors("ConfigurationError")
def test_bad_arguments_fail_before_any_answer(prefect_api: str, tmp_path: Path) -> None:
    path = tmp_path / "echo.jsonl"
    path.write_text(ECHO_SET)
    dataset = load_dataset(path)

    @flow(name="aiorch-test-evaluation")
    async def evaluation(checks: list[Check], epochs: int = 1) -> Evaluation:
        return await aevaluate(dataset, [_echo()], epochs=epochs, default_checks=checks)

    with pytest.raises(
        ConfigurationError,
        match=r"sample says-paris: checks\.0\.type: no scorer 'exactly'; did you mean 'exact'\?",
    ):
        anyio.run(evaluation, [Check(type="exactly")])
    with pytest.raises(ConfigurationError, match="epochs: must be at least 1"):
        anyio.run(evaluation, [Check(type="exact")], 0)


CAPITALS = {
    "france": "Paris",
    "japan": "Tokyo",
    "kenya": "Nairobi",
    "peru": "Lima",
    "italy": "Rome",
    "egypt": "Cairo",
}


async def _states(flow_run_id: str | None = None) -> list[str]:
    """States of the resume test's answer task runs: of one flow run, or of all of them."""
    async with get_client() as client:
        found = await client.read_task_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["aiorch-evaluation-resume-test"])),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            if flow_run_id
            else None,
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="generic.smollm2 ·")),
        )
    return [run.state_name or "" for run in found]


def test_a_killed_evaluation_resumes_without_answering_finished_samples_again(
    prefect_api: str, local_model: str, tmp_path: Path
) -> None:
    from tests.eval_flow import one_at_a_time

    path = tmp_path / "capitals.jsonl"
    path.write_text(
        "\n".join(
            f'{{"id": "{key}", "input": "What is the capital of {key.title()}?", '
            f'"target": "{city}"}}'
            for key, city in CAPITALS.items()
        )
    )
    name = f"resume-{tmp_path.name}"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.eval_flow", str(path), name, local_model],
        env={**os.environ, "PREFECT_API_URL": prefect_api},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:

        async def two_stored() -> int:
            with anyio.fail_after(240):
                while (done := (await _states()).count("Completed")) < 2:
                    assert process.poll() is None, "the evaluation ended before it was killed"
                    await anyio.sleep(0.2)
            return done

        anyio.run(two_stored)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    stored = anyio.run(_states).count("Completed")
    assert 2 <= stored < len(CAPITALS)

    resumed = anyio.run(one_at_a_time, str(path), name, local_model)
    assert len(resumed.results) == len(CAPITALS)
    assert resumed.agents[0].cache_hits >= stored
    assert resumed.flow_run_id is not None
    states = anyio.run(_states, resumed.flow_run_id)
    assert states.count("Cached") >= stored
    assert states.count("Cached") + states.count("Completed") == len(CAPITALS)
