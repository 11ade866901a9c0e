"""The evaluation flow: a dataset, one or more agents, epochs, and the gate.

Run it from the command line (``aiorch eval run``), deploy it (``prefect deploy``), or
call it from another flow. It publishes on its run the markdown artifact
``<name>-evaluation`` (the summary table, charts, the baseline test and the samples
that flipped, regressions first) and the table artifact ``<name>-evaluation-scores``
(per-sample scores: what a later run's ``baseline`` reads), emits the verdict as the
event ``aiorch.evaluation.passed`` or ``aiorch.evaluation.failed`` (what ``aiorch
promote`` reads), and returns the figures, every result and the verdict.

Example:
    ```bash
    aiorch eval run tests/data/eval/capitals.jsonl --agent aiorch-assistant --min-score 0.8
    aiorch eval run tests/data/eval/capitals.jsonl --agent aiorch-assistant --baseline RUN_ID
    ```
"""

from __future__ import annotations

from uuid import UUID

from prefect import flow
from prefect.runtime import flow_run

from aiorch.tasks.artifacts import publish_artifact
from aiorch.tasks.evaluation.baseline import aload_baseline, publish_scores
from aiorch.tasks.evaluation.compare import compare_to_baseline, disagreements, outcomes
from aiorch.tasks.evaluation.datasets import load_dataset
from aiorch.tasks.evaluation.gate import Gate, judge
from aiorch.tasks.evaluation.report import EvaluationReport, report_markdown
from aiorch.tasks.evaluation.run import EvaluationRecording, aevaluate
from aiorch.tasks.evaluation.verdicts import GateRecord, emit_verdict
from aiorch.tasks.monitoring.run_report import artifact_key


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
    baseline: str | None = None,
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
        baseline: An earlier evaluation to compare with: its flow run id, or the JSON
            file ``aiorch eval run --output`` wrote. An agent whose change's interval is
            all below zero fails the gate (exit code 4).
    """
    gate = Gate(min_score=min_score, max_errors=max_errors)
    # aiorch's own loader of a local file, not Hugging Face's (bandit matches the name).
    loaded = load_dataset(dataset)  # nosec B615
    earlier = await aload_baseline(baseline, evaluation=name or loaded.name) if baseline else None
    if earlier is not None:
        earlier.check_fits(agents, [sample.id for sample in loaded.samples])
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
    labels = [m.agent for m in evaluation.agents]
    now = outcomes(evaluation.results)
    then = earlier.outcomes if earlier else []
    against = compare_to_baseline(now, then, agents=labels, seed=seed) if earlier else []
    verdict = judge(gate, evaluation.agents, against)
    run_id = UUID(flow_run.get_id())
    await publish_scores(evaluation, run_id)
    report = EvaluationReport(
        evaluation=evaluation,
        gate=gate,
        verdict=verdict,
        baseline=against,
        baseline_source=earlier.source if earlier else None,
    )
    await publish_artifact(
        "markdown",
        key=artifact_key(evaluation.name, "evaluation"),
        data=report_markdown(
            report,
            disagreements(now, then, agents=labels),
            inputs={sample.id: sample.prompt() for sample in loaded.samples},
        ),
        description=f"evaluation {evaluation.name}: {len(loaded.samples)} samples",
        flow_run_id=run_id,
    )
    emit_verdict(GateRecord.of(report), run_id)
    return report


__all__ = ["EvaluationReport", "evaluate_flow"]
