"""Publish failures where the Prefect UI and automations see them.

When an aiorch task fails for good (after its retries), :func:`report_task_failure`
(a Prefect ``on_failure`` hook, already set on ``run_step``/``arun_step`` and
``run_agent``/``arun_agent``) publishes its problem-details document as

- a markdown artifact keyed ``aiorch-failure``: a readable summary, a table of the
  facts, and the document itself;
- a Prefect event ``aiorch.failure.reported`` on the task run (related to its flow
  run), whose payload is the document, for automations.

:func:`summarize_failures` (a flow ``on_failure``/``on_completion`` hook, or called
directly) publishes one summary of all the failures of a flow run, keyed
``aiorch-run-failures``.

Example:
    ```python
    from prefect import flow, task

    from aiorch.tasks.resilience.report import report_task_failure, summarize_failures

    @task(on_failure=[report_task_failure])
    def risky() -> None: ...

    @flow(on_failure=[summarize_failures], on_completion=[summarize_failures])
    def pipeline() -> None:
        risky()
    ```
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from prefect.client.schemas.objects import FlowRun, State, TaskRun
from prefect.client.schemas.sorting import ArtifactSort
from prefect.events import emit_event

from aiorch.core.events import related_flow_run
from aiorch.core.markdown import table_cell
from aiorch.tasks.artifacts import publish_artifact
from aiorch.tasks.resilience.problems import ProblemDetails, problem_from_exception

FAILURE_KEY = "aiorch-failure"
SUMMARY_KEY = "aiorch-run-failures"
FAILURE_EVENT = "aiorch.failure.reported"
RECOVERED_EVENT = "aiorch.failure.recovered"
_PROBLEM_MARK = "<!-- aiorch-problem -->"


def render_problem(problem: ProblemDetails) -> str:
    """Markdown for one failure: summary, facts table, the document as JSON."""
    facts: dict[str, Any] = {
        "kind": problem.kind,
        "status": problem.status,
        "retryable": "yes" if problem.retryable else "no",
        "task": problem.task,
        "task run": problem.task_run_id,
        "flow run": problem.flow_run_id,
        **{key: value for key, value in problem.context.items() if key != "log_tail"},
    }
    rows = "\n".join(
        f"| {table_cell(key)} | {table_cell(value)} |"
        for key, value in facts.items()
        if value is not None
    )
    tail = problem.context.get("log_tail")
    log_section = f"\n## Log tail\n\n```text\n{tail}\n```\n" if tail else ""
    return f"""# {problem.title}

{problem.detail}

| fact | value |
|---|---|
{rows}
{log_section}
## Problem details (RFC 9457)

{_PROBLEM_MARK}
```json
{problem.model_dump_json(indent=2, exclude_none=True)}
```
"""


async def publish_problem(problem: ProblemDetails) -> None:
    """Publish ``problem`` as the ``aiorch-failure`` artifact and an event."""
    await publish_artifact(
        "markdown",
        key=FAILURE_KEY,
        data=render_problem(problem),
        description=f"{problem.title}: {problem.detail}"[:500],
        flow_run_id=UUID(problem.flow_run_id) if problem.flow_run_id else None,
        task_run_id=UUID(problem.task_run_id) if problem.task_run_id else None,
    )
    emit_event(
        event=FAILURE_EVENT,
        resource={
            "prefect.resource.id": (
                f"prefect.task-run.{problem.task_run_id}"
                if problem.task_run_id
                else f"aiorch.failure.{problem.kind}"
            ),
            "aiorch.problem.kind": problem.kind,
        },
        related=related_flow_run(problem.flow_run_id),
        payload=problem.model_dump(mode="json", exclude_none=True),
    )


async def publish_recovery(problem: ProblemDetails, fixed_in_attempt: int) -> None:
    """Supersede ``problem``'s report: a later attempt of the flow ran the call successfully.

    Publishes a new version of the ``aiorch-failure`` artifact saying so (the key's latest
    version in the UI then reads as recovered) and an ``aiorch.failure.recovered`` event,
    so automations alerting on failures can close what they opened.
    """
    await publish_artifact(
        "markdown",
        key=FAILURE_KEY,
        data=(
            f"# Recovered: {table_cell(problem.task or 'a task')}\n\n"
            f"It failed ({problem.title}: {table_cell(problem.detail)[:300]}), and attempt "
            f"{fixed_in_attempt} of the flow run ran it again successfully. The failure "
            "report before this version is superseded.\n"
        ),
        description=f"Recovered by a retry: {problem.task}"[:500],
        flow_run_id=UUID(problem.flow_run_id) if problem.flow_run_id else None,
        task_run_id=UUID(problem.task_run_id) if problem.task_run_id else None,
    )
    emit_event(
        event=RECOVERED_EVENT,
        resource={
            "prefect.resource.id": f"prefect.task-run.{problem.task_run_id}",
            "aiorch.problem.kind": problem.kind,
        },
        related=related_flow_run(problem.flow_run_id),
        payload={"fixed_in_attempt": fixed_in_attempt, "type": problem.type},
    )


async def report_task_failure(task: Any, task_run: TaskRun, state: State[Any]) -> None:
    """A task ``on_failure`` hook: publish the failure's problem-details report."""
    error = await state.aresult(raise_on_failure=False)
    if not isinstance(error, BaseException):
        error = RuntimeError(state.message or "the task failed")
    problem = problem_from_exception(
        error,
        flow_run_id=str(task_run.flow_run_id) if task_run.flow_run_id else None,
        task_run_id=str(task_run.id),
        task=task_run.name,
    )
    await publish_problem(problem)


def _problem_from_markdown(markdown: str) -> ProblemDetails | None:
    if _PROBLEM_MARK not in markdown:
        return None
    document = markdown.split(_PROBLEM_MARK, 1)[1].split("```json", 1)[1].split("```", 1)[0]
    try:
        return ProblemDetails.model_validate(json.loads(document))
    except ValueError:
        return None


async def flow_run_problems(flow_run_id: UUID) -> list[ProblemDetails]:
    """The failures reported in a flow run and not recovered since, oldest first.

    A task run's report superseded by :func:`publish_recovery` (a later version of the
    artifact on the same task run) is left out: a retry fixed that call.
    """
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[FAILURE_KEY]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            ),
            sort=ArtifactSort.CREATED_DESC,
        )
    seen: set[UUID] = set()
    outstanding: list[ProblemDetails] = []
    for artifact in artifacts:
        if artifact.task_run_id is not None:
            if artifact.task_run_id in seen:
                continue
            seen.add(artifact.task_run_id)
        problem = _problem_from_markdown(str(artifact.data))
        if problem is not None:
            outstanding.append(problem)
    return outstanding[::-1]


def render_summary(flow_run_id: UUID, problems: list[ProblemDetails]) -> str:
    """Markdown summary of a flow run's failures."""
    if not problems:
        return f"# Failures of flow run `{flow_run_id}`\n\nNo aiorch task failed in this run.\n"
    rows = "\n".join(
        f"| {table_cell(problem.task)} | {problem.kind} | {problem.status} | "
        f"{'yes' if problem.retryable else 'no'} | {table_cell(problem.detail)[:200]} |"
        for problem in problems
    )
    return f"""# Failures of flow run `{flow_run_id}`

{len(problems)} task(s) failed for good.

| task | kind | status | retryable | detail |
|---|---|---|---|---|
{rows}
"""


async def summarize_failures(flow: Any, flow_run: FlowRun, state: State[Any]) -> None:
    """A flow hook: publish one summary of the run's failures (``aiorch-run-failures``)."""
    problems = await flow_run_problems(flow_run.id)
    await publish_artifact(
        "markdown",
        key=SUMMARY_KEY,
        data=render_summary(flow_run.id, problems),
        description=f"{len(problems)} failure(s) in this flow run",
        flow_run_id=flow_run.id,
    )
