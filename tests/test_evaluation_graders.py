"""Model-graded rubrics: the real local model grades, a grader's garbage stays in its sample."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import uuid4

import anyio
import pytest
from prefect import flow

from aiorch.agent_blocks import Agent, ModelProvider
from aiorch.tasks.evaluation.datasets import load_dataset
from aiorch.tasks.evaluation.run import Evaluation, aevaluate


@pytest.mark.logs_errors("StructuredOutputError", "ConfigurationError")
def test_graders_vote_and_a_grader_without_a_verdict_loses_only_its_vote(
    prefect_api: str, local_model: str, tmp_path: Path
) -> None:
    judge, echo = f"judge-{uuid4().hex[:8]}", f"echo-judge-{uuid4().hex[:8]}"
    Agent(
        instruction="You are a strict grader.",
        model="generic.smollm2",
        provider=ModelProvider(kind="local"),
        temperature=0,
        max_tokens=64,
    ).save(judge)
    # Repeats the grading prompt back: never a verdict.
    Agent(instruction="Repeat the user.", model="passthrough").save(echo)
    rubric = "The answer says that Paris is the capital of France."
    samples = [
        {
            "id": "both-graders",
            "input": "Paris is the capital of France.",
            "checks": [{"type": "rubric", "value": rubric, "graders": [judge, echo]}],
        },
        {
            "id": "only-garbage",
            "input": "Paris is the capital of France.",
            "checks": [{"type": "rubric", "value": rubric, "graders": [echo]}],
        },
        {"id": "plain", "input": "Lima", "target": "Lima"},
    ]
    path = tmp_path / "graded.jsonl"
    path.write_text("\n".join(json.dumps(sample) for sample in samples))
    dataset = load_dataset(path)

    @flow(name="aiorch-test-evaluation-graders")
    async def evaluation() -> Evaluation:
        agent = Agent(instruction="Repeat the user.", model="passthrough")
        return await aevaluate(dataset, [agent], name=f"graded-{tmp_path.name}")

    results = {r.sample_id: r for r in anyio.run(evaluation).results}
    voted = results["both-graders"].scores[0]
    assert voted.error is None
    assert f"{echo}: no verdict" in voted.reason
    assert f"{judge}: pass (" in voted.reason or f"{judge}: fail (" in voted.reason
    assert voted.value in (0.0, 1.0)
    garbage = results["only-garbage"].scores[0]
    assert garbage.error is not None
    assert garbage.error.startswith("no grader gave a verdict: ")
    assert results["only-garbage"].errored
    assert results["plain"].passed  # the other samples are scored as ever
