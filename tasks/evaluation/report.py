"""What an evaluation flow returns and the markdown artifact it publishes.

Example:
    ```python
    from aiorch.tasks.evaluation.report import EvaluationReport

    print(sorted(EvaluationReport.model_fields))
    ```
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import ObjectNotFound
from pydantic import ConfigDict, Field, ValidationError

from aiorch.core.errors import ConfigurationError, validation_problems
from aiorch.core.models import AiorchModel
from aiorch.tasks.evaluation.charts import cost_chart, latency_chart, score_chart
from aiorch.tasks.evaluation.compare import (
    BaselineComparison,
    Disagreement,
    baseline_markdown,
    disagreements_markdown,
)
from aiorch.tasks.evaluation.gate import Gate, Verdict, summary_markdown
from aiorch.tasks.evaluation.run import Evaluation


class EvaluationReport(AiorchModel):
    """An evaluation and its gate's verdict."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    evaluation: Evaluation
    gate: Gate = Field(default_factory=Gate, description="What the agents were held to.")
    verdict: Verdict
    baseline: list[BaselineComparison] = Field(
        default_factory=list, description="Each agent against the baseline, if one was given."
    )
    baseline_source: str | None = Field(default=None, description="Where the baseline came from.")

    def baseline_markdown(self) -> str:
        """The baseline test's table, or nothing without a baseline."""
        if self.baseline_source is None:
            return ""
        return baseline_markdown(self.baseline, self.baseline_source)


def report_markdown(
    report: EvaluationReport,
    flipped: list[Disagreement],
    *,
    inputs: dict[str, str],
) -> str:
    """The evaluation's artifact: summary and verdict, charts, baseline, disagreements."""
    evaluation = report.evaluation
    labels = [m.agent for m in evaluation.agents]
    then = {c.agent: c.baseline_mean for c in report.baseline if c.baseline_mean is not None}
    latencies = {
        label: [
            r.answer.latency_seconds
            for r in evaluation.results
            if r.agent == label and r.answer is not None and not r.answer.cache_hit
        ]
        for label in labels
    }
    charts = [
        f"![score per agent]({score_chart(evaluation.agents, then)})",
        f"![cost against score]({cost_chart(evaluation.agents)})",
    ]
    latency = latency_chart(latencies)
    charts.append(
        f"![latency per agent]({latency})"
        if latency
        else "Every answer was replayed from an earlier run: no latency to chart."
    )
    parts = [
        summary_markdown(evaluation.name, evaluation.agents, report.verdict).rstrip(),
        "## Charts",
        "\n\n".join(charts),
    ]
    if report.baseline_source is not None:
        parts += ["## Against the baseline", report.baseline_markdown()]
    parts += [
        "## Samples that disagree",
        disagreements_markdown(flipped, agents=labels, inputs=inputs),
    ]
    return "\n\n".join(parts) + "\n"


def read_output_file(path: Path, option: str) -> dict[str, Any]:
    """The JSON object ``aiorch eval run --output`` wrote to ``path``, named by ``--option``.

    Raises:
        ConfigurationError: no such file, or not a JSON object (naming the option).
    """
    if not path.is_file():
        raise ConfigurationError(
            f"{option}: {path} is neither a flow run id nor a file; pass the id of an "
            "earlier evaluation run or the JSON file `aiorch eval run --output` wrote"
        )
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConfigurationError(f"{option}: {path} is not JSON: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigurationError(
            f"{option}: {path} is not an `aiorch eval run --output` file: not an object"
        )
    return raw


def not_an_output_file(path: Path, option: str, error: ValidationError) -> ConfigurationError:
    """The error for an ``--output`` file whose content does not validate."""
    return ConfigurationError(
        f"{option}: {path} is not an `aiorch eval run --output` file: "
        f"{validation_problems(error, 'report')}"
    )


async def aread_earlier_run(reference: str, option: str) -> FlowRun | dict[str, Any]:
    """What ``--option`` names: an evaluation's flow run, or its ``--output`` file's JSON.

    Raises:
        ConfigurationError: no such run on this server, or no such file (naming the option).
    """
    try:
        run_id = UUID(reference)
    except ValueError:
        return read_output_file(Path(reference), option)
    async with get_client() as client:
        try:
            return await client.read_flow_run(run_id)
        except ObjectNotFound:
            raise ConfigurationError(
                f"{option}: no flow run {run_id} on this Prefect server; pass the id of an "
                "`aiorch-evaluate` run on it, or the JSON file `aiorch eval run --output` wrote"
            ) from None
