"""The performance dashboard: recent runs, task statistics and model usage, with charts.

Reads the flow runs of a time window from the Prefect API (their task runs, and the
``aiorch.model.usage`` events of model requests) and renders one markdown artifact:

- workflow execution statistics: runs per flow, failure rate, median duration;
- task statistics by kind (steps, agent calls, model requests, ...): count, failure
  rate, cache hit rate, median duration;
- agent performance per model: requests, replays, tokens in and out, median latency,
  estimated cost;
- charts as PNG images in data URLs (the Prefect UI renders those; it strips inline
  SVG): flow run durations over time, failure and cache hit rates by task kind, and
  tokens and latency per model.

Example:
    ```python
    from aiorch.tasks.monitoring.dashboard import median

    print(median([3.0, 1.0, 2.0]))  # 2.0
    ```
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from matplotlib.figure import Figure
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterStartTime,
)
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import FlowRunSort
from prefect.events.filters import (
    EventFilter,
    EventNameFilter,
    EventOccurredFilter,
)

from aiorch.core.events import MODEL_USAGE_EVENT
from aiorch.core.models import AiorchModel
from aiorch.tasks.monitoring.charts import png_data_url
from aiorch.tasks.monitoring.runs import TaskRunView, read_run

EVENTS_PER_PAGE = 50  # the API's largest page
MAX_EVENT_PAGES = 40
_FAILED = {"Failed", "Crashed", "TimedOut"}


class FlowStats(AiorchModel):
    """Runs of one flow in the window."""

    flow: str
    runs: int
    failed: int
    median_seconds: float | None


class KindStats(AiorchModel):
    """Task runs of one kind in the window."""

    kind: str
    runs: int
    failed: int
    cached: int
    median_seconds: float | None


class ModelStats(AiorchModel):
    """Model requests of one model in the window."""

    model: str
    requests: int
    replayed: int
    input_tokens: int
    output_tokens: int
    median_latency_seconds: float | None
    estimated_cost: float | None


class Dashboard(AiorchModel):
    """Everything the dashboard shows."""

    since: datetime
    until: datetime
    flows: list[FlowStats]
    kinds: list[KindStats]
    models: list[ModelStats]
    durations: list[tuple[datetime, str, float]]


def median(values: list[float]) -> float | None:
    """The median, or None for no values."""
    return statistics.median(values) if values else None


def _rate(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else ""


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


async def _flow_runs(since: datetime, limit: int) -> list[FlowRun]:
    async with get_client() as client:
        return await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since)),
            sort=FlowRunSort.START_TIME_DESC,
            limit=limit,
        )


async def _usage_events(since: datetime) -> list[dict[str, Any]]:
    payloads: list[dict[str, Any]] = []
    async with get_client() as client:
        page = await client.read_events(
            filter=EventFilter(
                event=EventNameFilter(name=[MODEL_USAGE_EVENT]),
                occurred=EventOccurredFilter(since=since),
            ),
            limit=EVENTS_PER_PAGE,
        )
        for _ in range(MAX_EVENT_PAGES):
            payloads.extend(event.payload for event in page.events)
            if not page.next_page:
                break
            page = await client.read_events_page(str(page.next_page))
    return payloads


def _models(events: list[dict[str, Any]]) -> list[ModelStats]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for payload in events:
        grouped[str(payload.get("model", "?"))].append(payload)
    stats = []
    for model, payloads in sorted(grouped.items()):
        fresh = [p for p in payloads if not p.get("cache_hit")]
        costs = [float(p["estimated_cost"]) for p in fresh if p.get("estimated_cost") is not None]
        stats.append(
            ModelStats(
                model=model,
                requests=len(payloads),
                replayed=len(payloads) - len(fresh),
                input_tokens=sum(int(p.get("input_tokens", 0)) for p in fresh),
                output_tokens=sum(int(p.get("output_tokens", 0)) for p in fresh),
                median_latency_seconds=median([float(p.get("latency_seconds", 0)) for p in fresh]),
                estimated_cost=sum(costs) if costs else None,
            )
        )
    return stats


async def collect(window: timedelta, limit: int = 200) -> Dashboard:
    """Gather the statistics of the runs that started within ``window``."""
    until = datetime.now(UTC)
    since = until - window
    runs = await _flow_runs(since, limit)
    flows: dict[str, list[FlowRun]] = defaultdict(list)
    tasks: list[TaskRunView] = []
    durations: list[tuple[datetime, str, float]] = []
    for flow_run in runs:
        view = await read_run(flow_run.id)
        flows[view.flow_name].append(flow_run)
        tasks.extend(view.tasks)
        if view.start and view.end:
            durations.append((view.start, view.flow_name, (view.end - view.start).total_seconds()))
    flow_stats = [
        FlowStats(
            flow=name,
            runs=len(items),
            failed=sum(1 for run in items if run.state and run.state.name in _FAILED),
            median_seconds=median([run.total_run_time.total_seconds() for run in items]),
        )
        for name, items in sorted(flows.items())
    ]
    by_kind: dict[str, list[TaskRunView]] = defaultdict(list)
    for task in tasks:
        by_kind[task.kind].append(task)
    kind_stats = [
        KindStats(
            kind=kind,
            runs=len(items),
            failed=sum(1 for task in items if task.state in _FAILED),
            cached=sum(1 for task in items if task.cache_hit),
            median_seconds=median(
                [task.duration_seconds for task in items if task.duration_seconds is not None]
            ),
        )
        for kind, items in sorted(by_kind.items())
    ]
    return Dashboard(
        since=since,
        until=until,
        flows=flow_stats,
        kinds=kind_stats,
        models=_models(await _usage_events(since)),
        durations=sorted(durations),
    )


def durations_chart(dashboard: Dashboard) -> str:
    """Flow run durations over time, one series per flow, as a PNG data URL."""
    figure = Figure(figsize=(8, 3))
    axes = figure.subplots()
    series: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for started, flow, seconds in dashboard.durations:
        series[flow].append((started, seconds))
    for flow, points in sorted(series.items()):
        # matplotlib plots datetimes natively; its stubs only admit numbers.
        times = cast(Any, [point[0] for point in points])
        axes.plot(times, [point[1] for point in points], marker="o", label=flow)
    axes.set_ylabel("seconds")
    axes.set_title("Flow run durations")
    if series:
        axes.legend(fontsize="small")
    figure.autofmt_xdate()
    return png_data_url(figure)


def rates_chart(dashboard: Dashboard) -> str:
    """Failure rate and cache hit rate per task kind, as a PNG data URL."""
    figure = Figure(figsize=(8, 3))
    axes = figure.subplots()
    kinds = [stats.kind for stats in dashboard.kinds]
    positions = list(range(len(kinds)))
    failure = [100 * s.failed / s.runs if s.runs else 0 for s in dashboard.kinds]
    cached = [100 * s.cached / s.runs if s.runs else 0 for s in dashboard.kinds]
    axes.bar([p - 0.2 for p in positions], failure, width=0.4, label="failure rate %")
    axes.bar([p + 0.2 for p in positions], cached, width=0.4, label="cache hit rate %")
    axes.set_xticks(positions, kinds, rotation=20, fontsize="small")
    axes.set_ylim(0, 100)
    axes.set_title("Task runs by kind")
    axes.legend(fontsize="small")
    return png_data_url(figure)


def models_chart(dashboard: Dashboard) -> str:
    """Tokens and median latency per model, as a PNG data URL."""
    figure = Figure(figsize=(8, 3))
    tokens, latency = figure.subplots(1, 2)
    names = [stats.model for stats in dashboard.models]
    tokens.bar(names, [s.input_tokens + s.output_tokens for s in dashboard.models])
    tokens.set_title("Tokens (fresh requests)")
    latency.bar(names, [s.median_latency_seconds or 0 for s in dashboard.models])
    latency.set_title("Median latency (s)")
    for axes in (tokens, latency):
        axes.tick_params(axis="x", labelrotation=30, labelsize="small")
    return png_data_url(figure)


def render_dashboard(dashboard: Dashboard) -> str:
    """The dashboard as markdown with embedded charts."""
    flows = "\n".join(
        f"| {s.flow} | {s.runs} | {_rate(s.failed, s.runs)} | {_seconds(s.median_seconds)} |"
        for s in dashboard.flows
    )
    kinds = "\n".join(
        f"| {s.kind} | {s.runs} | {_rate(s.failed, s.runs)} | {_rate(s.cached, s.runs)} | "
        f"{_seconds(s.median_seconds)} |"
        for s in dashboard.kinds
    )
    models = "\n".join(
        f"| {s.model} | {s.requests} | {s.replayed} | {s.input_tokens} | {s.output_tokens} | "
        f"{_seconds(s.median_latency_seconds)} | "
        f"{'' if s.estimated_cost is None else f'{s.estimated_cost:.4f}'} |"
        for s in dashboard.models
    )
    return f"""# Performance dashboard

Runs that started between {dashboard.since:%Y-%m-%d %H:%M} and {dashboard.until:%Y-%m-%d %H:%M} UTC.

## Workflows

| flow | runs | failure rate | median duration s |
|---|---|---|---|
{flows}

![Flow run durations]({durations_chart(dashboard)})

## Tasks by kind

| kind | task runs | failure rate | cache hit rate | median duration s |
|---|---|---|---|---|
{kinds}

![Failure and cache hit rates by kind]({rates_chart(dashboard)})

## Agents: models

| model | requests | replayed | input tokens | output tokens | median latency s | est. cost |
|---|---|---|---|---|---|---|
{models}

![Tokens and latency per model]({models_chart(dashboard)})
"""
