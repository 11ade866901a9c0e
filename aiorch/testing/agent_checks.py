"""Agent tests as ordinary pytest tests: evaluate, and fail with the reasons.

:func:`assert_agent_passes` runs an evaluation of ``agent`` on a dataset inside a flow
and raises ``AssertionError`` naming every failed sample and why, so pytest shows what
went wrong. With ``fixture=PATH`` the first run (no file yet) records the answers there;
every later run replays them with no model at all, and a changed prompt or agent fails
the test as drift until the file is deleted and recorded again.

Example:
    ```python
    from aiorch.agent_blocks import Agent
    from aiorch.testing.agent_checks import assert_agent_passes


    def test_geography() -> None:
        agent = Agent(instruction="Answer with the city only.", model="passthrough")
        assert_agent_passes("tests/data/eval/capitals.csv", agent, min_score=0.0)
    ```
"""

from __future__ import annotations

from pathlib import Path

import anyio
from prefect import flow

from aiorch.agent_blocks import Agent
from aiorch.core.errors import AiorchError
from aiorch.tasks.evaluation.datasets import Dataset, load_dataset
from aiorch.tasks.evaluation.gate import Gate, judge
from aiorch.tasks.evaluation.run import Evaluation, EvaluationRecording, aevaluate

SHOWN_FAILURES = 10


class AgentTestFailed(AiorchError, AssertionError):
    """An agent test's evaluation did not pass its gate; pytest reports it as a failure."""

    kind = "agent-test-failed"
    title = "Agent test failed"
    status = 422


@flow(name="aiorch-agent-test")
async def _evaluate(
    dataset: Dataset, agent: Agent | str, epochs: int, replay: EvaluationRecording | None
) -> Evaluation:
    return await aevaluate(dataset, [agent], epochs=epochs, replay=replay)


def assert_agent_passes(
    dataset: str | Path | Dataset,
    agent: Agent | str,
    *,
    min_score: float = 1.0,
    max_errors: int = 0,
    epochs: int = 1,
    fixture: str | Path | None = None,
) -> Evaluation:
    """Evaluate ``agent`` on ``dataset``; raise :class:`AgentTestFailed` unless it passes.

    Args:
        dataset: A dataset file, or one already loaded.
        agent: An ``Agent`` block, or a saved one's name.
        min_score: The lowest mean score that passes (every check, by default).
        max_errors: Results that may fail to be scored.
        epochs: Answers per sample.
        fixture: A recording to replay; recorded there first when it does not exist.
    """
    # aiorch's own loader of a local file, not Hugging Face's (bandit matches the name).
    loaded = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)  # nosec B615
    recording = Path(fixture) if fixture is not None else None
    replay = None
    if recording is not None and recording.exists():
        replay = EvaluationRecording.model_validate_json(recording.read_text())
    evaluation = anyio.run(_evaluate, loaded, agent, epochs, replay)
    if recording is not None and replay is None:
        recording.write_text(EvaluationRecording.of(evaluation).model_dump_json(indent=2))
    verdict = judge(Gate(min_score=min_score, max_errors=max_errors), evaluation.agents)
    if not verdict.passed:
        failed = [r for r in evaluation.results if not r.passed]
        lines = [
            f"  {r.sample_id} (epoch {r.epoch}): "
            + (
                r.error
                or "; ".join(s.reason or s.error or s.scorer for s in r.scores if not s.passed)
            )
            for r in failed[:SHOWN_FAILURES]
        ]
        more = len(failed) - SHOWN_FAILURES
        raise AgentTestFailed(
            "\n".join(
                [
                    *verdict.failures,
                    f"{len(failed)} of {len(evaluation.results)} results failed:",
                    *lines,
                    *([f"  ... and {more} more"] if more > 0 else []),
                ]
            )
        )
    return evaluation
