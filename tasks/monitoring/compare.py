"""Compare two flow runs: per task, state, duration, cache use and changed content.

Task runs are matched by task function and name (aiorch names steps after the step),
then the rest by task function and order of start (Prefect's generated names carry a
random suffix). "Content" is the key a task's result is
stored under (the storage key of its persisted result): for a container step the content
key of its spec and inputs, for a model request the conversation sent. A different key
means the work or its inputs changed (and so may its outputs); the same key, the same
result.

Example:
    ```python
    from aiorch.tasks.monitoring.compare import duration_change

    print(duration_change(2.0, 3.0))  # +50%
    ```
"""

from __future__ import annotations

from uuid import UUID

from aiorch.core.models import AiorchModel
from aiorch.tasks.monitoring.runs import RunView, TaskRunView, read_run


class TaskComparison(AiorchModel):
    """One task in both runs (or in only one of them)."""

    task: str
    kind: str
    before_state: str | None
    after_state: str | None
    before_seconds: float | None
    after_seconds: float | None
    before_cached: bool | None
    after_cached: bool | None
    content: str  # same, changed, unknown, only before, only after


class RunComparison(AiorchModel):
    """Two runs side by side."""

    before: RunView
    after: RunView
    tasks: list[TaskComparison]


def duration_change(before: float | None, after: float | None) -> str:
    """The relative change of a duration, e.g. ``+50%``; empty when unknown."""
    if before is None or after is None or before <= 0:
        return ""
    return f"{(after - before) / before:+.0%}"


def _content(before: TaskRunView | None, after: TaskRunView | None) -> str:
    if before is None:
        return "only after"
    if after is None:
        return "only before"
    if before.content is None or after.content is None:
        return "unknown"
    return "same" if before.content == after.content else "changed"


def _pairs(
    before: list[TaskRunView], after: list[TaskRunView]
) -> list[tuple[TaskRunView | None, TaskRunView | None]]:
    pairs: list[tuple[TaskRunView | None, TaskRunView | None]] = []
    unmatched = list(after)
    leftovers: list[TaskRunView] = []
    for old in before:
        same = next(
            (new for new in unmatched if (new.task_key, new.name) == (old.task_key, old.name)),
            None,
        )
        if same is None:
            leftovers.append(old)
            continue
        unmatched.remove(same)
        pairs.append((old, same))
    for old in leftovers:
        same = next((new for new in unmatched if new.task_key == old.task_key), None)
        if same is not None:
            unmatched.remove(same)
        pairs.append((old, same))
    pairs.extend((None, new) for new in unmatched)
    return pairs


def compare(before: RunView, after: RunView) -> RunComparison:
    """Match the task runs of two runs and compare them."""
    rows = []
    for old, new in _pairs(before.tasks, after.tasks):
        shown = new or old
        assert shown is not None
        rows.append(
            TaskComparison(
                task=shown.name,
                kind=shown.kind,
                before_state=old.state if old else None,
                after_state=new.state if new else None,
                before_seconds=old.duration_seconds if old else None,
                after_seconds=new.duration_seconds if new else None,
                before_cached=old.cache_hit if old else None,
                after_cached=new.cache_hit if new else None,
                content=_content(old, new),
            )
        )
    return RunComparison(before=before, after=after, tasks=rows)


async def compare_runs(before: UUID, after: UUID) -> RunComparison:
    """Read both runs from the API and compare them."""
    return compare(await read_run(before), await read_run(after))


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _cached(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "no")


def render_comparison(comparison: RunComparison) -> str:
    """Markdown: the two runs, then one row per task."""
    before, after = comparison.before, comparison.after
    rows = "\n".join(
        f"| {row.task} | {row.kind} | {row.before_state or ''} -> {row.after_state or ''} | "
        f"{_seconds(row.before_seconds)} | {_seconds(row.after_seconds)} | "
        f"{duration_change(row.before_seconds, row.after_seconds)} | "
        f"{_cached(row.before_cached)} -> {_cached(row.after_cached)} | {row.content} |"
        for row in comparison.tasks
    )
    changed = sum(row.content == "changed" for row in comparison.tasks)
    return f"""# Run comparison: {before.flow_name}

| | before | after |
|---|---|---|
| run | {before.name} (`{before.id}`) | {after.name} (`{after.id}`) |
| state | {before.state} | {after.state} |
| task runs | {len(before.tasks)} | {len(after.tasks)} |

{changed} task(s) changed content.

| task | kind | state | before s | after s | change | cached | content |
|---|---|---|---|---|---|---|---|
{rows}
"""
