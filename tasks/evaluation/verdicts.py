"""The gate's verdict as a Prefect event about the evaluation's flow run.

Every evaluation run ends by emitting ``aiorch.evaluation.passed`` or
``aiorch.evaluation.failed`` about its flow run (resource ``prefect.flow-run.<id>``),
its payload a :class:`GateRecord`: the evaluation, its agents, the gate it held them to
and the verdict. Automations can act on it (notify on a failed gate, run something on a
passed one), and ``aiorch promote`` reads it back by the run's id, on any machine that
reaches the same server, for as long as the server keeps events
(``PREFECT_SERVER_EVENTS_RETENTION_PERIOD``, 7 days by default): an older evaluation is
stale, and promoting on it is refused.

Example:
    ```python
    from prefect import flow

    from aiorch.tasks.evaluation.verdicts import aread_gate

    @flow
    async def may_ship(evaluation_run_id: str) -> bool:
        record = await aread_gate(evaluation_run_id)
        return record.verdict.passed
    ```
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.events import emit_event
from prefect.events.filters import (
    EventFilter,
    EventNameFilter,
    EventOccurredFilter,
    EventResourceFilter,
)
from pydantic import ConfigDict, ValidationError

from aiorch.core.errors import ConfigurationError, validation_problems
from aiorch.core.models import AiorchModel
from aiorch.tasks.evaluation.gate import Gate, Verdict
from aiorch.tasks.evaluation.report import (
    EvaluationReport,
    aread_earlier_run,
    not_an_output_file,
)

PASSED_EVENT = "aiorch.evaluation.passed"
FAILED_EVENT = "aiorch.evaluation.failed"
# The server stores events a moment after the run reports its final state.
EVENT_DEADLINE_SECONDS = 30.0
POLL_SECONDS = 0.25


class GateRecord(AiorchModel):
    """What an evaluation's gate held its agents to, and what it decided."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    evaluation: str
    agents: list[str]
    gate: Gate
    baseline: str | None = None
    verdict: Verdict

    @property
    def gated(self) -> bool:
        """Whether the gate asked anything of the scores: a minimum or a baseline."""
        return self.gate.min_score is not None or self.baseline is not None

    @classmethod
    def of(cls, report: EvaluationReport) -> GateRecord:
        """The record of an evaluation's report."""
        return cls(
            evaluation=report.evaluation.name,
            agents=[m.agent for m in report.evaluation.agents],
            gate=report.gate,
            baseline=report.baseline_source,
            verdict=report.verdict,
        )


def emit_verdict(record: GateRecord, flow_run_id: UUID) -> None:
    """Emit ``record`` as the verdict event about the evaluation's flow run."""
    emit_event(
        event=PASSED_EVENT if record.verdict.passed else FAILED_EVENT,
        resource={
            "prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
            "prefect.resource.name": record.evaluation,
        },
        payload=record.model_dump(mode="json"),
    )


async def aread_gate(
    reference: str, *, deadline_seconds: float = EVENT_DEADLINE_SECONDS
) -> GateRecord:
    """The gate record of ``reference``: an evaluation's flow run id, or its --output file.

    Raises:
        ConfigurationError: no such run or file, the run has not completed, or it
            emitted no verdict (naming which, and what to pass instead).
    """
    run = await aread_earlier_run(reference, "evaluation")
    if isinstance(run, dict):
        return _from_output(run, Path(reference))
    run_id = run.id
    if run.state_type != StateType.COMPLETED:
        state = run.state_name or "not started"
        raise ConfigurationError(
            f"evaluation: flow run {run_id} is {state}, not Completed: an evaluation gates "
            "only once it has finished; wait for it, or run it again"
        )
    async with get_client() as client:
        # The default window starts 180 days before today: from the run's creation on,
        # however old it is, its verdict is found while the server keeps it.
        window = {"occurred": EventOccurredFilter(since=run.created)} if run.created else {}
        events = EventFilter(
            event=EventNameFilter(name=[PASSED_EVENT, FAILED_EVENT]),
            resource=EventResourceFilter(id=[f"prefect.flow-run.{run_id}"]),
            **window,
        )
        deadline = time.monotonic() + deadline_seconds
        while not (page := await client.read_events(filter=events, limit=1)).events:
            if time.monotonic() > deadline:
                raise ConfigurationError(
                    f"evaluation: flow run {run_id} emitted no verdict ({PASSED_EVENT} or "
                    f"{FAILED_EVENT}): it is not an `aiorch-evaluate` run, or older than the "
                    "server keeps events; pass a recent evaluation run"
                )
            await asyncio.sleep(POLL_SECONDS)
    try:
        return GateRecord.model_validate(page.events[0].payload)
    except ValidationError as error:
        raise ConfigurationError(
            f"evaluation: the verdict of flow run {run_id} cannot be read "
            f"({validation_problems(error, 'verdict')}); it was not written by aiorch"
        ) from None


def _from_output(raw: dict[str, Any], path: Path) -> GateRecord:
    try:
        return GateRecord.of(EvaluationReport.model_validate(raw))
    except ValidationError as error:
        raise not_an_output_file(path, "evaluation", error) from None
