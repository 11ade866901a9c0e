"""Alert rules the platform evaluates, and the Prefect events they emit.

The open-source Prefect server has no metric triggers, so aiorch evaluates its
threshold rules itself when a flow run ends (:func:`evaluate_alerts`, a flow hook) and
emits an event per finding; automations (``deployments/automations.py``) turn those
events, and breaker openings, into notifications.

- ``aiorch.alert.slow-step``: a step execution took longer than ``factor`` times the
  median of its previous ``baseline_runs`` executions (same step name, not cached).
- ``aiorch.alert.failure-rate``: the flow's failure rate over its last ``window_runs``
  runs reached ``threshold_percent``.

Example:
    ```python
    from aiorch.tasks.monitoring.alerts import AlertRules

    print(AlertRules().slow_step_factor)  # 2.0
    ```
"""

from __future__ import annotations

import statistics
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    TaskRunFilter,
    TaskRunFilterName,
)
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort
from prefect.events import emit_event
from pydantic import ConfigDict, Field

from aiorch.core.models import AiorchModel
from aiorch.tasks.monitoring.runs import read_run, read_settled_run
from aiorch.tasks.naming import TaskKind, task_kind

SLOW_STEP_EVENT = "aiorch.alert.slow-step"
FAILURE_RATE_EVENT = "aiorch.alert.failure-rate"
_FINAL = [StateType.COMPLETED, StateType.FAILED, StateType.CRASHED]


class AlertRules(AiorchModel):
    """Thresholds of the rules aiorch evaluates."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slow_step_factor: float = Field(default=2.0, gt=1, description="Times the baseline.")
    baseline_runs: int = Field(default=5, ge=1, description="Earlier executions compared.")
    minimum_step_seconds: float = Field(
        default=1.0, ge=0, description="Steps faster than this never alert (noise)."
    )
    failure_rate_percent: float = Field(default=50.0, gt=0, le=100)
    window_runs: int = Field(default=10, ge=1, description="Runs the failure rate covers.")
    minimum_runs: int = Field(default=3, ge=1, description="Runs needed before it alerts.")


class Alert(AiorchModel):
    """One finding, as emitted."""

    event: str
    subject: str
    payload: dict[str, Any]


async def _baseline(name: str, before: UUID, runs: int) -> list[float]:
    async with get_client() as client:
        earlier = await client.read_task_runs(
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=[name])),
            sort=TaskRunSort.EXPECTED_START_TIME_DESC,
            limit=runs + 20,
        )
    durations = [
        run.total_run_time.total_seconds()
        for run in earlier
        if run.flow_run_id != before
        and run.state_name == "Completed"
        and task_kind(run.task_key) is TaskKind.STEP_EXECUTION
    ]
    return durations[:runs]


async def slow_steps(flow_run_id: UUID, rules: AlertRules) -> list[Alert]:
    """Step executions of the run slower than their baseline (its final states read)."""
    run = await read_settled_run(flow_run_id)
    alerts = []
    for task in run.tasks:
        seconds = task.duration_seconds
        if task.kind is not TaskKind.STEP_EXECUTION or task.state != "Completed" or seconds is None:
            continue
        if seconds < rules.minimum_step_seconds:
            continue
        baseline = await _baseline(task.name, flow_run_id, rules.baseline_runs)
        if len(baseline) < rules.baseline_runs:
            continue
        typical = statistics.median(baseline)
        if typical > 0 and seconds > rules.slow_step_factor * typical:
            alerts.append(
                Alert(
                    event=SLOW_STEP_EVENT,
                    subject=(
                        f"{task.name} took {seconds:.1f} s ({seconds / typical:.1f}x its baseline)"
                    ),
                    payload={
                        "step": task.name,
                        "task_run_id": str(task.id),
                        "flow_run_id": str(flow_run_id),
                        "seconds": seconds,
                        "baseline_seconds": typical,
                        "factor": seconds / typical,
                    },
                )
            )
    return alerts


async def failure_rate(flow_run: FlowRun, flow_name: str, rules: AlertRules) -> list[Alert]:
    """An alert when the flow's recent failure rate reached the threshold."""
    async with get_client() as client:
        recent = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=_FINAL))
            ),
            sort=FlowRunSort.START_TIME_DESC,
            limit=rules.window_runs,
        )
    runs = {run.id: run for run in recent}
    runs[flow_run.id] = flow_run  # this run's final state may not be stored yet
    if len(runs) < rules.minimum_runs:
        return []
    failed = sum(
        1
        for run in runs.values()
        if run.state and run.state.type in {StateType.FAILED, StateType.CRASHED}
    )
    rate = 100.0 * failed / len(runs)
    if rate < rules.failure_rate_percent:
        return []
    return [
        Alert(
            event=FAILURE_RATE_EVENT,
            subject=f"{flow_name}: {failed} of the last {len(runs)} runs failed ({rate:.0f}%)",
            payload={"flow": flow_name, "failed": failed, "runs": len(runs), "rate_percent": rate},
        )
    ]


def emit_alert(alert: Alert, flow_run_id: UUID) -> None:
    """Emit ``alert`` as a Prefect event about the flow run."""
    emit_event(
        event=alert.event,
        resource={
            "prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
            "aiorch.alert.subject": alert.subject,
        },
        payload=alert.payload,
    )


async def evaluate_alerts(flow: Any, flow_run: FlowRun, state: State[Any]) -> None:
    """A flow hook (on completion and failure): evaluate the default rules."""
    await check_alerts(flow_run, state, AlertRules(), getattr(flow, "name", None))


async def check_alerts(
    flow_run: FlowRun, state: State[Any], rules: AlertRules, flow_name: str | None = None
) -> list[Alert]:
    """Evaluate ``rules`` for a finished flow run, emit the findings, and return them."""
    flow_name = flow_name or (await read_run(flow_run.id)).flow_name
    finished = flow_run.model_copy(update={"state": state})
    alerts = [
        *await slow_steps(flow_run.id, rules),
        *await failure_rate(finished, flow_name, rules),
    ]
    for alert in alerts:
        emit_alert(alert, flow_run.id)
    return alerts
