"""The evaluation flow: a dataset, one or more agents, epochs, and the gate.

Run it from the command line (``aiorch eval run``), deploy it (``prefect deploy``), or
call it from another flow. It publishes the summary as the markdown artifact
``<name>-evaluation`` on its run and returns the figures, every result and the verdict.

Example:
    ```bash
    aiorch eval run tests/data/eval/capitals.jsonl --agent aiorch-assistant --min-score 0.8
    ```
"""

from __future__ import annotations

from uuid import UUID

from prefect import flow
from prefect.runtime import flow_run
from pydantic import ConfigDict

from aiorch.core.models import AiorchModel
from aiorch.tasks.artifacts import publish_artifact
from aiorch.tasks.evaluation.datasets import load_dataset
from aiorch.tasks.evaluation.gate import Gate, Verdict, judge, summary_markdown
from aiorch.tasks.evaluation.run import Evaluation, EvaluationRecording, aevaluate
from aiorch.tasks.monitoring.run_report import artifact_key


class EvaluationReport(AiorchModel):
    """An evaluation and its gate's verdict."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    evaluation: Evaluation
    verdict: Verdict


@flow(name="aiorch-evaluate")
async def evaluate_flow(
    dataset: str,
    agents: list[str],
    epochs: int = 1,
    name: str | None = None,
    max_concurrency: int = 4,
    min_score: float | None = None,
    max_errors: int = 0,
    pass_at: list[int] | None = None,
    seed: int = 0,
    replay: EvaluationRecording | None = None,
) -> EvaluationReport:
    """Evaluate the ``agents`` (Agent block names) on the ``dataset`` file.

    Args:
        dataset: A ``.jsonl``, ``.csv`` or ``.yaml`` dataset, validated before any call.
        agents: Names of saved Agent blocks; each answers every sample.
        epochs: How many times each agent answers each sample (flakiness, pass@k).
        name: The evaluation's name (its answers are stored under it); the dataset's.
        max_concurrency: Answers made at once.
        min_score: The gate: the lowest mean score that passes.
        max_errors: The gate: results per agent that may fail to be scored.
        pass_at: The k of pass@k (each at most ``epochs``); 1 by default.
        seed: The bootstrap's seed.
        replay: A recording (``aiorch eval run --record``) to answer from, with no model.
    """
    gate = Gate(min_score=min_score, max_errors=max_errors)
    loaded = load_dataset(dataset)
    evaluation = await aevaluate(
        loaded,
        agents,
        epochs=epochs,
        name=name,
        max_concurrency=max_concurrency,
        ks=pass_at or [1],
        seed=seed,
        replay=replay,
    )
    verdict = judge(gate, evaluation.agents)
    await publish_artifact(
        "markdown",
        key=artifact_key(evaluation.name, "evaluation"),
        data=summary_markdown(evaluation.name, evaluation.agents, verdict),
        description=f"evaluation {evaluation.name}: {len(loaded.samples)} samples",
        flow_run_id=UUID(flow_run.get_id()),
    )
    return EvaluationReport(evaluation=evaluation, verdict=verdict)
