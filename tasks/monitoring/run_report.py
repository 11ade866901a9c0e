"""The report every flow run gets: a table, a dependency diagram and a timeline.

:func:`publish_run_report` (a flow ``on_completion``/``on_failure`` hook, or called
with a flow run id) reads the run from the Prefect API and publishes, keyed per flow so
the Prefect UI versions them run after run:

- ``<flow>-run-report`` (markdown): a summary, one table row per task run (name, kind,
  runner or model, state, duration, cache hit, attempts), the task dependency graph as
  a mermaid flowchart coloured by state, the execution timeline as a gantt chart image
  (PNG: legible in the UI, where a mermaid gantt is not), and for failed task runs
  their log tail (from aiorch's failure reports) and a link to their logs;
- ``<flow>-run-table`` (table): the same rows, for sorting and export.

Example:
    ```python
    from prefect import flow

    from aiorch.tasks.monitoring.run_report import publish_run_report

    @flow(on_completion=[publish_run_report], on_failure=[publish_run_report])
    def nightly() -> int:
        return 1
    ```
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from prefect.client.schemas.objects import FlowRun, State

from aiorch.core.markdown import table_cell
from aiorch.core.settings import load_settings
from aiorch.core.ui import ui_link
from aiorch.tasks.artifacts import publish_artifact
from aiorch.tasks.message_records import MessageRecord
from aiorch.tasks.monitoring.charts import png_data_url
from aiorch.tasks.monitoring.runs import FAILED_STATES, RunView, TaskRunView, read_settled_run
from aiorch.tasks.naming import TaskKind
from aiorch.tasks.resilience.report import flow_run_problems, publish_recovery

STATE_CLASSES = {
    "Completed": "fill:#d1fadf,stroke:#12b76a",
    "Cached": "fill:#d1e9ff,stroke:#2e90fa",
    "Failed": "fill:#fee4e2,stroke:#f04438",
    "Crashed": "fill:#fee4e2,stroke:#f04438",
    "Running": "fill:#fef0c7,stroke:#f79009",
    "Pending": "fill:#f2f4f7,stroke:#98a2b3",
}
STATE_COLOURS = {
    "Completed": "#12b76a",
    "Cached": "#2e90fa",
    "Failed": "#f04438",
    "Crashed": "#b42318",
    "TimedOut": "#f04438",
    "Cancelled": "#98a2b3",
    "Running": "#f79009",
    "Pending": "#d0d5dd",
}
OTHER_COLOUR = "#667085"
TIMELINE_ALT = "Timeline of the task runs"
TIMELINE_ROWS = 60
# The UI shows a markdown artifact in a column about 540 px wide at a 1400 px window:
# a 7-inch figure (700 px) is scaled by about 0.77, so 12 pt text stays about 13 px.
TIMELINE_WIDTH_INCHES = 7.0
TIMELINE_ROW_INCHES = 0.35
TIMELINE_FONT_SIZE = 12
# The V2 UI draws mermaid on a dark panel, where the default dark message text cannot be
# read: light text and lines, 16 px messages, wrapped labels, wide actor boxes.
SEQUENCE_STYLE = (
    '%%{init: {"themeVariables": {"signalTextColor": "#e4e7ec", "signalColor": "#98a2b3", '
    '"fontSize": "16px"}, "sequence": {"messageFontSize": 16, "actorFontSize": 14, '
    '"wrap": true, "width": 200}}}%%'
)


def artifact_key(flow_name: str, suffix: str) -> str:
    """A Prefect artifact key (lower-case letters, digits, dashes) for a flow."""
    slug = re.sub(r"[^a-z0-9]+", "-", flow_name.lower()).strip("-") or "flow"
    return f"{slug}-{suffix}"


def _label(text: str) -> str:
    return re.sub(r'["<>#:;|`]', " ", text).strip()


def _usage_of(task: TaskRunView, run: RunView) -> tuple[int | None, float | None]:
    """A model request's own usage; an agent call's, summed over its model requests."""
    if task.kind is not TaskKind.AGENT_CALL:
        return task.tokens, task.cost
    requests = [
        other
        for other in run.tasks
        if other.kind is TaskKind.MODEL_REQUEST and task.id in other.upstream
    ]
    tokens = [other.tokens for other in requests if other.tokens is not None]
    costs = [other.cost for other in requests if other.cost is not None]
    return (sum(tokens) if tokens else None), (sum(costs) if costs else None)


def report_rows(run: RunView) -> list[dict[str, Any]]:
    """One row per task run."""
    rows = []
    for task in run.tasks:
        tokens, cost = _usage_of(task, run)
        rows.append(
            {
                "task": task.name,
                "kind": task.kind,
                "runner or model": task.detail or "",
                "state": f"{task.state} (recovered)" if task.recovered else task.state,
                "duration s": round(task.duration_seconds, 3)
                if task.duration_seconds is not None
                else None,
                "cache hit": task.cache_hit,
                "attempts": task.attempts,
                "tokens": tokens,
                "cost": None if cost is None else round(cost, 6),
            }
        )
    return rows


def dependency_diagram(run: RunView) -> str:
    """A mermaid flowchart of the task runs and their data dependencies, by state."""
    ids = {task.id: f"t{index}" for index, task in enumerate(run.tasks)}
    lines = ["flowchart LR"]
    for task in run.tasks:
        lines.append(f'    {ids[task.id]}["{_label(task.name)}<br/>{task.state}"]')
    for task in run.tasks:
        for upstream in task.upstream:
            if upstream in ids:
                lines.append(f"    {ids[upstream]} --> {ids[task.id]}")
    used = sorted({task.state for task in run.tasks} & set(STATE_CLASSES))
    for state in used:
        lines.append(f"    classDef {state.lower()} {STATE_CLASSES[state]}")
    for task in run.tasks:
        if task.state in STATE_CLASSES:
            lines.append(f"    class {ids[task.id]} {task.state.lower()}")
    return "\n".join(lines)


@dataclass(frozen=True)
class TimelineBar:
    """One task run on the timeline: seconds from the run's first start."""

    label: str
    state: str
    offset_seconds: float
    duration_seconds: float


def timeline_bars(run: RunView) -> list[TimelineBar]:
    """The task runs that started, in start order (the first ``TIMELINE_ROWS``)."""
    started = sorted(
        ((task.start, task) for task in run.tasks if task.start), key=lambda pair: pair[0]
    )
    if not started:
        return []
    origin = started[0][0]
    return [
        TimelineBar(
            label=f"{task.name} ({task.kind})",
            state=task.state,
            offset_seconds=(start - origin).total_seconds(),
            duration_seconds=((task.end or start) - start).total_seconds(),
        )
        for start, task in started[:TIMELINE_ROWS]
    ]


def timeline_chart(run: RunView) -> str | None:
    """A gantt chart of the task runs, coloured by state, as a PNG data URL (None if none).

    A mermaid gantt renders small in the Prefect UI, dark text on its dark code-block
    background; an image keeps labels at a readable size in either theme.
    """
    bars = timeline_bars(run)
    if not bars:
        return None
    # matplotlib loads when a chart is drawn, after the run, not when a flow imports hooks.
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    figure = Figure(figsize=(TIMELINE_WIDTH_INCHES, 0.8 + TIMELINE_ROW_INCHES * len(bars)))
    axes = figure.subplots()
    rows = range(len(bars))
    # A bar of zero seconds would be invisible: show it one pixel-ish wide.
    longest = max(bar.offset_seconds + bar.duration_seconds for bar in bars) or 1.0
    axes.barh(
        list(rows),
        [max(bar.duration_seconds, longest / 400) for bar in bars],
        left=[bar.offset_seconds for bar in bars],
        color=[STATE_COLOURS.get(bar.state, OTHER_COLOUR) for bar in bars],
        height=0.7,
    )
    axes.set_yticks(list(rows), [bar.label for bar in bars], fontsize=TIMELINE_FONT_SIZE)
    axes.invert_yaxis()
    axes.tick_params(axis="x", labelsize=TIMELINE_FONT_SIZE)
    axes.set_xlabel("seconds since the first task started", fontsize=TIMELINE_FONT_SIZE)
    shown = "" if len(bars) == len(run.tasks) else f" (first {len(bars)} task runs by start)"
    axes.set_title(f"{run.flow_name} / {run.name}{shown}", fontsize=TIMELINE_FONT_SIZE + 1)
    states = sorted({bar.state for bar in bars})
    axes.legend(
        handles=[
            Patch(color=STATE_COLOURS.get(state, OTHER_COLOUR), label=state) for state in states
        ],
        fontsize=TIMELINE_FONT_SIZE,
        loc="lower right",
    )
    axes.grid(axis="x", alpha=0.3)
    return png_data_url(figure)


def _said(text: str) -> str:
    # Mermaid ends a statement at ';' and reads '#' as an entity: keep words and plain
    # punctuation only.
    return re.sub(r"[^\w .,:/()?!'=+-]", " ", text).strip() or "(empty)"


def conversation(run: RunView) -> list[tuple[TaskRunView, MessageRecord]]:
    """The run's handled messages, in the order their handling started."""
    found = [(task, task.message) for task in run.tasks if task.message is not None]
    return sorted(
        found, key=lambda pair: (pair[0].start is None, pair[0].start or pair[1].created_at)
    )


def sequence_diagram(messages: list[tuple[TaskRunView, MessageRecord]]) -> str:
    """The conversation as a mermaid sequence diagram: requests, replies and events."""
    names: dict[str, str] = {}
    lines: list[str] = []

    def who(address: str) -> str:
        if address not in names:
            names[address] = f"p{len(names)}"
            lines.append(f"    participant {names[address]} as {_said(address)}")
        return names[address]

    arrows: list[str] = []
    for _, record in messages:
        sender, handler = who(record.sender), who(record.handler)
        via = "" if record.recipient == record.handler else f" (to {record.recipient})"
        arrow = "-)" if record.kind == "event" else "->>"
        arrows.append(f"    {sender}{arrow}{handler}: {_said(record.content + via)}")
        if record.answer is not None:
            arrows.append(f"    {handler}-->>{sender}: {_said(record.answer)}")
    return "\n".join([SEQUENCE_STYLE, "sequenceDiagram", *lines, *arrows])


def conversation_rows(run: RunView) -> list[dict[str, Any]]:
    """One row per handled message, with when it was handled and how long it took."""
    rows = []
    for task, record in conversation(run):
        waited = (task.start - record.created_at).total_seconds() if task.start else None
        rows.append(
            {
                "from": record.sender,
                "to": record.recipient,
                "handled by": record.handler,
                "kind": record.kind,
                "priority": record.priority,
                "waited (s)": None if waited is None else round(max(waited, 0.0), 2),
                "took (s)": None
                if task.duration_seconds is None
                else round(task.duration_seconds, 2),
                "message": record.content,
                "reply": record.answer,
            }
        )
    return rows


def _markdown_table(rows: list[dict[str, Any]]) -> str:
    header = "| " + " | ".join(rows[0]) + " |"
    rule = "|" + "---|" * len(rows[0])
    body = [
        "| "
        + " | ".join(table_cell("" if value is None else value) for value in row.values())
        + " |"
        for row in rows
    ]
    return "\n".join([header, rule, *body])


def _conversation_section(run: RunView) -> str:
    messages = conversation(run)
    if not messages:
        return ""
    return f"""
## Conversation

{len(messages)} messages handled.

```mermaid
{sequence_diagram(messages)}
```

{_markdown_table(conversation_rows(run))}
"""


def _task_link(task_run_id: UUID) -> str | None:
    return ui_link(f"runs/task-run/{task_run_id}")


async def render_run_report(run: RunView) -> str:
    """The markdown report of a run."""
    rows = report_rows(run)
    table = _markdown_table(rows) if rows else "| task |\n|---|"
    failed = [task for task in run.tasks if task.state in FAILED_STATES and not task.recovered]
    recovered = [task for task in run.tasks if task.recovered]
    problems = {problem.task_run_id: problem for problem in await flow_run_problems(run.id)}
    details = []
    for task in failed:
        problem = problems.get(str(task.id))
        link = _task_link(task.id)
        lines = [f"### {task.name} ({task.state})"]
        if problem is not None:
            lines.append(problem.detail)
            tail = problem.context.get("log_tail")
            if tail:
                lines.append(f"```text\n{tail}\n```")
        lines.append(f"[Task run logs]({link})" if link else f"Task run id: `{task.id}`")
        details.append("\n\n".join(lines))
    duration = (
        f"{(run.end - run.start).total_seconds():.1f} s" if run.start and run.end else "running"
    )
    cached = sum(task.cache_hit for task in run.tasks)
    failures = "\n\n".join(details) if details else "No task run failed."
    if recovered:
        failures += "\n\n## Recovered by a retry\n\n" + "\n".join(
            f"- {table_cell(task.name)}: {task.state} in attempt {task.flow_attempt} of the "
            f"flow run; attempt {task.recovered_in} ran the same call successfully"
            for task in recovered
        )
    chart = timeline_chart(run)
    timeline_section = f"![{TIMELINE_ALT}]({chart})" if chart else "No task run started."
    return f"""# Run report: {run.flow_name} / {run.name}

State **{run.state}** after {duration}: {len(run.tasks)} task runs, {cached} from cache, \
{len(failed)} failed{f", {len(recovered)} recovered by a retry" if recovered else ""}. \
Environment: {table_cell(load_settings().environment)}.

{table}

## Task dependencies

```mermaid
{dependency_diagram(run)}
```

## Timeline

{timeline_section}
{_conversation_section(run)}
## Failed task runs

{failures}
"""


async def publish_report_for(flow_run_id: UUID) -> RunView:
    """Read the run and publish its report and table artifacts; the run read.

    A failure report of a call that a later attempt of the flow fixed is superseded
    (:func:`~aiorch.tasks.resilience.report.publish_recovery`).
    """
    run = await read_settled_run(flow_run_id)
    fixed = {str(task.id): task.recovered_in for task in run.tasks if task.recovered_in}
    for problem in await flow_run_problems(run.id):
        attempt = fixed.get(problem.task_run_id or "")
        if attempt is not None:
            await publish_recovery(problem, attempt)
    await publish_artifact(
        "markdown",
        key=artifact_key(run.flow_name, "run-report"),
        data=await render_run_report(run),
        description=f"Run report of {run.name}",
        flow_run_id=run.id,
    )
    await publish_artifact(
        "table",
        key=artifact_key(run.flow_name, "run-table"),
        data=report_rows(run),
        description=f"Task runs of {run.name}",
        flow_run_id=run.id,
    )
    return run


async def publish_run_report(flow: Any, flow_run: FlowRun, state: State[Any]) -> None:
    """A flow hook (``on_completion``, ``on_failure``): publish the run's report."""
    await publish_report_for(flow_run.id)
