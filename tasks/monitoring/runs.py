"""A flow run as the monitoring artifacts see it: its task runs, states, times, links.

Read from the Prefect API after (or during) the run. Each task run gets its kind and
detail (runner, model or tool) from :func:`aiorch.tasks.naming.describe`, its content
identity from the storage key of its persisted result, its upstream task runs from
Prefect's recorded ``task_inputs``, and whether it was served from cache.

aiorch puts no Prefect tags on its tasks on purpose: Prefect acquires a tag-based
concurrency slot from the server for every tagged task run, a synchronous write that an
SQLite server answers with 503 under load (measured: ``run_agent`` took a median 1.9 s
with its tags and 14 ms without, see docs/monitoring.md). Users who want tags (to filter,
or for tag concurrency limits) add them with ``with_options(tags=...)``.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import PurePath
from uuid import UUID

import anyio
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import TaskRun
from pydantic import Field

from aiorch.core.models import AiorchModel
from aiorch.core.prefect_internals import send_pending_events
from aiorch.tasks.message_records import MessageRecord
from aiorch.tasks.naming import TaskKind, describe, task_kind

FAILED_STATES = frozenset({"Failed", "Crashed", "TimedOut", "Cancelled"})
SUCCEEDED = frozenset({"Completed", "Cached"})
UNSETTLED_STATES = frozenset({"Pending", "Running", "Scheduled", "Retrying", "AwaitingRetry"})
SETTLE_POLL_SECONDS = 0.25


def content_digest(key: str) -> str:
    """A result's storage key shortened to its digest: the identity of work and inputs."""
    return PurePath(key).name.rsplit("-", 1)[-1][:16]


class TaskRunView(AiorchModel):
    """One task run of the flow run."""

    id: UUID
    name: str
    task_key: str = Field(description="Which task function (the same in every run).")
    dynamic_key: str = Field(description="Which call of it within the run (0, 1, ...).")
    kind: TaskKind = Field(description="step, step execution, agent call, model request, task, ...")
    state: str
    start: datetime | None
    end: datetime | None
    attempts: int
    cache_hit: bool
    tags: list[str]
    detail: str | None = Field(
        default=None, description="The runner of a step execution, the model or the tool."
    )
    upstream: list[UUID] = Field(description="Task runs whose results this one received.")
    content: str | None = Field(
        default=None,
        description="Identity of its work and inputs (a step's content key, shortened).",
    )
    flow_attempt: int = Field(
        default=1, description="The flow run's attempt it ran in (2 after one flow retry)."
    )
    recovered_in: int | None = Field(
        default=None,
        description="It failed, and this later attempt of the flow ran the call successfully.",
    )
    message: MessageRecord | None = Field(
        default=None, description="The message a handle-message task run handled."
    )
    tokens: int | None = Field(default=None, description="Tokens of a model request.")
    cost: float | None = Field(default=None, description="Estimated cost of a model request.")

    @property
    def recovered(self) -> bool:
        """It failed, and a later attempt of the flow ran the same call successfully."""
        return self.recovered_in is not None

    @property
    def duration_seconds(self) -> float | None:
        """Wall time from start to end, when both are known."""
        if self.start is None or self.end is None:
            return None
        return (self.end - self.start).total_seconds()


class RunView(AiorchModel):
    """A flow run and its task runs, oldest first."""

    id: UUID
    name: str
    flow_name: str
    state: str
    start: datetime | None
    end: datetime | None
    tasks: list[TaskRunView]


def _content(run: TaskRun) -> str | None:
    storage_key = getattr(run.state.data if run.state else None, "storage_key", None)
    if not isinstance(storage_key, str):
        return None
    name, separator, digest = PurePath(storage_key).name.rpartition("-")
    # aiorch's keys are "<what>-<sha256>"; an uncached task's result gets a random key,
    # which says nothing about its content.
    if not separator or not name or len(digest) != 64:
        return None
    return content_digest(storage_key)


def _upstream(run: TaskRun) -> list[UUID]:
    found: list[UUID] = []
    for inputs in run.task_inputs.values():
        for item in inputs:
            identifier = getattr(item, "id", None)
            is_task = getattr(item, "input_type", None) == "task_run"
            if is_task and isinstance(identifier, UUID) and identifier not in found:
                found.append(identifier)
    return found


async def _usage(run: TaskRun) -> tuple[int | None, float | None]:
    """Tokens and cost of a model request, from its stored reply (replays included)."""
    if task_kind(run.task_key) is not TaskKind.MODEL_REQUEST or run.state is None:
        return None, None
    if not run.state.is_completed():
        return None, None
    try:
        reply = await run.state.aresult(raise_on_failure=False)
    except Exception:  # a result that expired or lives elsewhere: report without it
        return None, None
    usage = getattr(reply, "usage", None)
    tokens = getattr(usage, "total_tokens", None)
    cost = getattr(reply, "estimated_cost", None)
    return (tokens if isinstance(tokens, int) else None), (
        float(cost) if isinstance(cost, int | float) else None
    )


async def _message(run: TaskRun) -> MessageRecord | None:
    """The record a handle-message task run left as its result."""
    if task_kind(run.task_key) is not TaskKind.MESSAGE or run.state is None:
        return None
    if not run.state.is_completed():
        return None
    try:
        record = await run.state.aresult(raise_on_failure=False)
    except Exception:  # a result that expired or lives elsewhere: report without it
        return None
    if not isinstance(record, MessageRecord):
        return None
    # The record only: a subclass's extra fields (the reply's parts) stay in storage.
    return MessageRecord.model_validate(record.model_dump(include=set(MessageRecord.model_fields)))


async def _view(run: TaskRun) -> TaskRunView:
    state = run.state.name if run.state is not None else (run.state_name or "Unknown")
    tokens, cost = await _usage(run)
    kind, detail = describe(run.task_key, run.name)
    return TaskRunView(
        id=run.id,
        name=run.name,
        task_key=run.task_key,
        dynamic_key=run.dynamic_key,
        kind=kind,
        state=state,
        start=run.start_time,
        end=run.end_time,
        attempts=max(run.run_count, 1),
        flow_attempt=max(run.flow_run_run_count, 1),
        cache_hit=state == "Cached",
        tags=sorted(run.tags),
        detail=detail,
        upstream=_upstream(run),
        content=_content(run),
        message=await _message(run),
        tokens=tokens,
        cost=cost,
    )


def recovered_failures(tasks: list[TaskRunView]) -> dict[UUID, int]:
    """Failed task runs a later attempt of the flow ran successfully, and that attempt.

    A flow retry makes new task runs. A call is matched across attempts by its task
    function and its position among that function's calls in the attempt (``tasks`` in
    start order), as ``dynamic_key`` differs between attempts.
    """
    position: dict[UUID, tuple[str, int]] = {}
    counts: dict[tuple[str, int], int] = {}
    for task in tasks:
        group = (task.task_key, task.flow_attempt)
        position[task.id] = (task.task_key, counts.get(group, 0))
        counts[group] = counts.get(group, 0) + 1
    succeeded: dict[tuple[str, int], int] = {}
    for task in tasks:
        if task.state in SUCCEEDED:
            call = position[task.id]
            succeeded[call] = max(succeeded.get(call, 0), task.flow_attempt)
    return {
        task.id: succeeded[position[task.id]]
        for task in tasks
        if task.state in FAILED_STATES and succeeded.get(position[task.id], 0) > task.flow_attempt
    }


async def read_settled_run(flow_run_id: UUID, deadline_seconds: float = 10.0) -> RunView:
    """A finished run once its task runs' final states reached the server (or the deadline).

    The server records task runs and their states from the events the flow's process
    sends, a moment after each task ran: read in a flow's final-state hook, the last task
    runs may still show Running or not be there at all. Inside the flow run, the read
    waits until this process has sent its events, then until no task run shows an
    unfinished state and two reads a poll apart find as many task runs (the server has
    stopped recording new ones). Read later, one read with no unfinished task run is
    enough. A run that is not finished is returned as it is.
    """
    deadline = time.monotonic() + deadline_seconds
    recording = await send_pending_events(flow_run_id, deadline_seconds)
    counted: int | None = None
    while True:
        run = await read_run(flow_run_id)
        settled = not any(task.state in UNSETTLED_STATES for task in run.tasks)
        steady = not recording or counted == len(run.tasks)
        if run.state in UNSETTLED_STATES or (settled and steady) or time.monotonic() > deadline:
            return run
        counted = len(run.tasks)
        await anyio.sleep(SETTLE_POLL_SECONDS)


async def read_run(flow_run_id: UUID) -> RunView:
    """The flow run and its task runs, from the Prefect API."""
    async with get_client() as client:
        flow_run = await client.read_flow_run(flow_run_id)
        flow = await client.read_flow(flow_run.flow_id)
        task_runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            limit=200,
        )
    views = [await _view(run) for run in task_runs]
    tasks = sorted(
        views,
        key=lambda view: (view.start is None, view.start or datetime.max, view.name),
    )
    recovered = recovered_failures(tasks)
    tasks = [
        task.model_copy(update={"recovered_in": recovered[task.id]})
        if task.id in recovered
        else task
        for task in tasks
    ]
    return RunView(
        id=flow_run.id,
        name=flow_run.name,
        flow_name=flow.name,
        state=flow_run.state.name if flow_run.state else "Unknown",
        start=flow_run.start_time,
        end=flow_run.end_time,
        tasks=tasks,
    )
