"""Baselines: an earlier evaluation's per-sample scores, from its flow run or its file.

Every evaluation run publishes its per-sample scores as the table artifact
``<name>-evaluation-scores`` (:func:`publish_scores`): one row per agent and sample, the
rows of :class:`~aiorch.tasks.evaluation.compare.SampleOutcome`. A baseline is read
back from there by the run's id, on any machine that reaches the same Prefect server,
or from the JSON file ``aiorch eval run --output`` wrote.

Example:
    ```python
    from prefect import flow

    from aiorch.tasks.evaluation.baseline import aload_baseline

    @flow
    async def how_was_it(run_id: str) -> int:
        baseline = await aload_baseline(run_id, evaluation="capitals")
        return len(baseline.outcomes)
    ```
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from prefect.client.schemas.sorting import ArtifactSort
from pydantic import ConfigDict, TypeAdapter, ValidationError

from aiorch.core.errors import ConfigurationError
from aiorch.core.models import AiorchModel
from aiorch.tasks.artifacts import publish_artifact
from aiorch.tasks.evaluation.compare import SampleOutcome, match_baseline_agents, outcomes
from aiorch.tasks.evaluation.report import aread_earlier_run, not_an_output_file
from aiorch.tasks.evaluation.run import Evaluation
from aiorch.tasks.monitoring.run_report import artifact_key

SCORES_SUFFIX = "evaluation-scores"
_ROWS = TypeAdapter(list[SampleOutcome])


class Baseline(AiorchModel):
    """An earlier evaluation's per-sample outcomes and where they were read from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    outcomes: list[SampleOutcome]

    @property
    def agents(self) -> list[str]:
        """The agents it evaluated, in its order."""
        return list(dict.fromkeys(o.agent for o in self.outcomes))

    def check_fits(self, agents: Sequence[str], sample_ids: Sequence[str]) -> None:
        """Refuse, before any model is called, a baseline these agents cannot be held to.

        Raises:
            ConfigurationError: an agent has no baseline agent, or no sample is shared.
        """
        match_baseline_agents(agents, self.agents)
        if not {o.sample_id for o in self.outcomes} & set(sample_ids):
            raise ConfigurationError(
                f"baseline: {self.source} shares no sample id with this dataset; a "
                "baseline must be an earlier evaluation of the same dataset"
            )


def scores_key(evaluation: str) -> str:
    """The key of evaluation ``evaluation``'s per-sample scores artifact."""
    return artifact_key(evaluation, SCORES_SUFFIX)


async def publish_scores(evaluation: Evaluation, flow_run_id: UUID | None) -> None:
    """Publish ``evaluation``'s per-sample outcomes as its scores table artifact."""
    rows = [row.model_dump(mode="json") for row in outcomes(evaluation.results)]
    await publish_artifact(
        "table",
        key=scores_key(evaluation.name),
        data=rows,
        description=f"evaluation {evaluation.name}: per-sample scores (a baseline for later runs)",
        flow_run_id=flow_run_id,
    )


async def aload_baseline(reference: str, *, evaluation: str) -> Baseline:
    """The baseline ``reference`` names: an evaluation's flow run id, or its JSON file.

    Raises:
        ConfigurationError: the file or run does not exist, or holds no scores of
            ``evaluation`` (naming which, and what to pass instead).
    """
    earlier = await aread_earlier_run(reference, "baseline")
    if isinstance(earlier, dict):
        return _from_output(earlier, Path(reference))
    run_id = earlier.id
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[scores_key(evaluation)]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
            ),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    if not artifacts:
        raise ConfigurationError(
            f"baseline: flow run {run_id} published no scores of evaluation {evaluation!r} "
            f"(artifact {scores_key(evaluation)}): it is not a run of that evaluation, or it "
            "failed before publishing them; pass another run, or its --output JSON file"
        )
    data: Any = artifacts[0].data
    try:
        rows = _ROWS.validate_python(json.loads(data) if isinstance(data, str) else data)
    except (ValidationError, json.JSONDecodeError) as error:
        raise ConfigurationError(
            f"baseline: the scores artifact of flow run {run_id} cannot be read ({error}); "
            "it was not written by aiorch: pass another run"
        ) from None
    return Baseline(source=f"flow run {run_id}", outcomes=rows)


def _from_output(raw: dict[str, Any], path: Path) -> Baseline:
    try:
        earlier = Evaluation.model_validate(raw.get("evaluation", raw))
    except ValidationError as error:
        raise not_an_output_file(path, "baseline", error) from None
    return Baseline(source=str(path), outcomes=outcomes(earlier.results))
