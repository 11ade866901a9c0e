"""Record an evaluation on the real local model, replay it with no model, catch drift."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import pytest
from prefect import flow

from aiorch.agent_blocks import Agent, McpServer, ModelProvider
from aiorch.tasks.agents.tools import close_mcp_connections
from aiorch.tasks.evaluation.datasets import load_dataset
from aiorch.tasks.evaluation.run import Evaluation, EvaluationRecording, aevaluate

GEOGRAPHY = "You answer geography questions with the city name only."
DATASET = "\n".join(
    [
        '{"id": "france", "input": "What is the capital of France?", "target": "Paris"}',
        '{"id": "japan", "input": "What is the capital of Japan?", "target": "Tokyo"}',
    ]
)


def _agent(provider: ModelProvider, instruction: str = GEOGRAPHY) -> Agent:
    return Agent(
        instruction=instruction,
        model="generic.smollm2",
        provider=provider,
        temperature=0,
        max_tokens=16,
    )


# FastAgent logs ERROR when a stream from the local server brings no completion, then asks
# again without streaming (and gets the answer). It happens here after the grader test's
# structured-output requests to the same server, not alone: see the issue 17 note.
@pytest.mark.logs_errors("RecordingDrift", "stream returned no usable completion")
def test_a_recording_replays_without_a_model_and_a_changed_prompt_is_drift(
    prefect_api: str, local_model: str, tmp_path: Path
) -> None:
    path = tmp_path / "capitals.jsonl"
    path.write_text(DATASET)
    dataset = load_dataset(path)
    name = f"replay-{tmp_path.name}"

    @flow(name="aiorch-test-evaluation-replay")
    async def evaluation(agent: Agent, replay: EvaluationRecording | None = None) -> Evaluation:
        return await aevaluate(dataset, [agent], name=name, replay=replay)

    recorded = anyio.run(evaluation, _agent(ModelProvider(kind="local")))
    fixture = EvaluationRecording.of(recorded)
    answers = fixture.answers["generic.smollm2"]
    assert sorted(answers) == ["france", "japan"]
    assert all(len(r.requests) == 1 and r.requests[0].reply for r in answers.values())
    saved = tmp_path / "fixture.json"
    saved.write_text(fixture.model_dump_json())
    fixture = EvaluationRecording.model_validate_json(saved.read_text())

    # Nothing listens on port 9: a request that reached a model would fail.
    nowhere = ModelProvider(kind="generic", base_url="http://127.0.0.1:9/v1")
    replayed = anyio.run(evaluation, _agent(nowhere), fixture)
    texts = {r.sample_id: r.answer.text for r in recorded.results if r.answer}
    assert {r.sample_id: r.answer.text for r in replayed.results if r.answer} == texts
    assert [r.value for r in replayed.results] == [r.value for r in recorded.results]
    assert replayed.agents[0].errors == 0
    assert replayed.agents[0].cache_hits == 2
    assert replayed.agents[0].cost == 0.0

    drifted = anyio.run(evaluation, _agent(nowhere, GEOGRAPHY + " Be brief."), fixture)
    assert drifted.agents[0].errors == 2
    assert {r.error for r in drifted.results} == {
        "recording-drift: model request 1 differs from the recording: the instruction "
        "changed (record it again if the change is intended)"
    }


def test_tool_calls_are_scored_from_the_records_and_replayed_without_the_server(
    prefect_api: str, scratch_dir: Path
) -> None:
    log = scratch_dir / "tools.log"
    calculator = McpServer(
        name="calc",
        command=sys.executable,
        args=[str(Path(__file__).parent / "mcp" / "calculator.py")],
        env={"AIORCH_TEST_TOOL_LOG": str(log)},
    )
    path = scratch_dir / "tools.jsonl"
    path.write_text(
        json.dumps(
            {
                "id": "adds",
                "input": '***CALL_TOOL calc__add {"a": 2, "b": 3}',
                "checks": [
                    {"type": "tool_call", "value": "calc__add", "arguments": {"a": 2}},
                    {"type": "tool_call", "value": "calc__add", "arguments": {"a": 7}},
                ],
            }
        )
    )
    dataset = load_dataset(path)
    agent = Agent(instruction="x", model="passthrough", mcp_servers=[calculator])

    @flow(name="aiorch-test-evaluation-tools")
    async def evaluation(replay: EvaluationRecording | None = None) -> Evaluation:
        return await aevaluate(dataset, [agent], name=f"tools-{scratch_dir.name}", replay=replay)

    recorded = anyio.run(evaluation)
    first, second = recorded.results[0].scores
    assert first.passed
    assert first.reason == "called calc__add"
    assert not second.passed
    assert second.reason == 'called calc__add, never with {"a": 7}'
    fixture = EvaluationRecording.of(recorded)
    assert [c.tool for c in fixture.answers["passthrough"]["adds"].tool_calls] == ["calc__add"]
    calls_made = log.read_text().count("\n")
    assert calls_made == 1

    close_mcp_connections()  # the server is gone; a replay must not need it
    calculator_gone = anyio.run(evaluation, fixture)
    assert [s.passed for s in calculator_gone.results[0].scores] == [True, False]
    assert log.read_text().count("\n") == calls_made
