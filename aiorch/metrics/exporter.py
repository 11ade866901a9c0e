"""aiorch's figures for Prometheus, read from the Prefect API and aiorch's stores.

Flow runs are short-lived processes nobody can scrape, so the figures come from what
they leave behind: each scrape first reads the task runs that finished and the
``aiorch.model.usage`` and ``aiorch.breaker.*`` events that arrived since the last one
(with an overlap, as Prefect ships events in the background, and each counted once),
then reports counters since the exporter started, plus gauges read live: flow runs by
state, the oldest running flow run, every breaker's state, the message bus's dead
letters, and (on the embedded bus) its queue depths; a RabbitMQ broker reports its own
queues through its Prometheus plugin.

Example:
    ```python
    from aiorch.metrics.exporter import MetricsExporter

    exporter = MetricsExporter()  # counts from now on
    # exporter.scrape() reads the Prefect API of PREFECT_API_URL and returns the text
    print(exporter.registry.get_sample_value("aiorch_steps_total", {"cache": "hit"}))  # None
    ```
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    TaskRunFilter,
    TaskRunFilterEndTime,
)
from prefect.client.schemas.objects import StateType, TaskRun
from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventOrder
from prefect.events.schemas.events import ReceivedEvent
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from aiorch.core.events import BACKUP_COMPLETED_EVENT, MODEL_USAGE_EVENT
from aiorch.core.settings import load_settings
from aiorch.tasks.messaging.store import MessageStore
from aiorch.tasks.naming import TaskKind, describe
from aiorch.tasks.resilience.breaker import BreakerState
from aiorch.tasks.resilience.breaker_report import breaker_rows
from aiorch.tasks.resilience.breaker_store import BreakerStoreUnavailable

logger = logging.getLogger("aiorch.metrics")

BREAKER_EVENT_PREFIX = "aiorch.breaker."
# Prefect ships events and task-run states in the background: each read reaches back
# this far, and what was counted already is skipped by id.
OVERLAP = timedelta(minutes=2)
PAGE = 200
# Prefect keeps events 7 days by default; a daily backup is always within reach.
BACKUP_LOOKBACK = timedelta(days=30)
EVENT_PAGE = 50  # the most Prefect's events API returns at once
STEP_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
MODEL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)


class MetricsExporter:
    """The exporter's state: counters since it started and what it has counted.

    Args:
        started: Where counting begins; now by default (a counter counts from its
            process's start, as Prometheus expects).
    """

    def __init__(self, started: datetime | None = None) -> None:
        self.registry = CollectorRegistry()
        self._started = started or datetime.now(UTC)
        self._since = self._started
        self._counted: dict[str, datetime] = {}
        self._lock = threading.Lock()
        self._api_up = False
        self._flow_runs: dict[str, int] = {}
        self._oldest_running_seconds = 0.0
        self._last_backup = 0.0
        registry = self.registry
        self.step_executions = Counter(
            "aiorch_step_executions",
            "Container step executions that finished, by runner and final state "
            "(cached: the cache served the step).",
            ["runner", "state"],
            registry=registry,
        )
        self.step_seconds = Histogram(
            "aiorch_step_execution_seconds",
            "Run time of finished step executions, by runner.",
            ["runner"],
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self.steps = Counter(
            "aiorch_steps",
            "Container step executions, by whether the cache served them (hit) or they ran.",
            ["cache"],
            registry=registry,
        )
        self.model_requests = Counter(
            "aiorch_model_requests",
            "Model requests, by model and whether a stored reply was replayed.",
            ["model", "replayed"],
            registry=registry,
        )
        self.model_tokens = Counter(
            "aiorch_model_tokens",
            "Tokens of fresh model requests, by model and direction (input, output).",
            ["model", "direction"],
            registry=registry,
        )
        self.model_cost = Counter(
            "aiorch_model_cost",
            "Estimated cost of fresh model requests with known prices, by model.",
            ["model"],
            registry=registry,
        )
        self.model_latency = Histogram(
            "aiorch_model_latency_seconds",
            "Latency of fresh model requests, by model.",
            ["model"],
            buckets=MODEL_BUCKETS,
            registry=registry,
        )
        self.breaker_transitions = Counter(
            "aiorch_breaker_transitions",
            "Circuit-breaker state changes, by breaker and the state entered.",
            ["breaker", "state"],
            registry=registry,
        )
        registry.register(_LiveGauges(self))

    def scrape(self) -> bytes:
        """Read what is new, then the whole exposition (Prometheus text format)."""
        self.refresh()
        return generate_latest(self.registry)

    def refresh(self) -> None:
        """Count the task runs and events that arrived since the last refresh."""
        with self._lock:
            until = datetime.now(UTC)
            # Nothing from before the exporter started: its counters begin there.
            since = max(self._since - OVERLAP, self._started)
            try:
                with get_client(sync_client=True) as client:
                    for run in _finished_task_runs(client, since):
                        self._count_task_run(run)
                    for event in _events(client, since):
                        self._count_event(event)
                    self._flow_runs = _flow_runs_by_state(client)
                    self._oldest_running_seconds = _oldest_running_seconds(client, until)
                    self._last_backup = _last_backup_timestamp(client, until)
            except (httpx.HTTPError, OSError) as error:
                self._api_up = False
                logger.warning("the Prefect API could not be read: %s", error)
                return
            self._api_up = True
            self._since = until
            self._counted = {key: at for key, at in self._counted.items() if at >= since}

    def _first_time(self, key: str, at: datetime) -> bool:
        if key in self._counted:
            return False
        self._counted[key] = at
        return True

    def _count_task_run(self, run: TaskRun) -> None:
        if run.end_time is None or run.state is None:
            return
        kind, runner = describe(run.task_key, run.name)
        if kind is not TaskKind.STEP_EXECUTION:
            return
        if not self._first_time(f"task-run:{run.id}", run.end_time):
            return
        runner = runner or "unknown"
        state = (run.state.name or run.state.type.value).lower()
        self.step_executions.labels(runner=runner, state=state).inc()
        # A cached execution is the cache serving the step: it ran nothing.
        cached = state == "cached"
        self.steps.labels(cache="hit" if cached else "miss").inc()
        if not cached:
            self.step_seconds.labels(runner=runner).observe(run.total_run_time.total_seconds())

    def _count_event(self, event: ReceivedEvent) -> None:
        if not self._first_time(f"event:{event.id}", event.occurred):
            return
        payload: dict[str, Any] = event.payload
        if event.event == MODEL_USAGE_EVENT:
            model = str(payload.get("model", "unknown"))
            replayed = bool(payload.get("cache_hit"))
            self.model_requests.labels(model=model, replayed=str(replayed).lower()).inc()
            if replayed:
                return
            for direction in ("input", "output"):
                tokens = payload.get(f"{direction}_tokens") or 0
                self.model_tokens.labels(model=model, direction=direction).inc(tokens)
            if payload.get("estimated_cost") is not None:
                self.model_cost.labels(model=model).inc(float(payload["estimated_cost"]))
            if payload.get("latency_seconds") is not None:
                self.model_latency.labels(model=model).observe(float(payload["latency_seconds"]))
        elif event.event.startswith(BREAKER_EVENT_PREFIX):
            self.breaker_transitions.labels(
                breaker=str(payload.get("breaker", "unknown")), state=str(payload.get("to"))
            ).inc()

    def live(self) -> Iterator[GaugeMetricFamily]:
        """Gauges as of the last refresh: API reachability, flow runs; breakers read now."""
        up = GaugeMetricFamily(
            "aiorch_prefect_api_up", "1 when the last scrape could read the Prefect API."
        )
        up.add_metric([], 1.0 if self._api_up else 0.0)
        yield up
        runs = GaugeMetricFamily(
            "aiorch_flow_runs", "Flow runs on the server, by state type.", labels=["state"]
        )
        for state, count in self._flow_runs.items():
            runs.add_metric([state], count)
        yield runs
        oldest = GaugeMetricFamily(
            "aiorch_flow_run_oldest_running_seconds",
            "How long the longest-running flow run has been running (0 when none runs).",
        )
        oldest.add_metric([], self._oldest_running_seconds)
        yield oldest
        backup = GaugeMetricFamily(
            "aiorch_last_backup_timestamp_seconds",
            "When the last backup completed (Unix time; 0: none in the event history).",
        )
        backup.add_metric([], self._last_backup)
        yield backup
        yield _breaker_gauge()
        yield from _message_gauges()


class _LiveGauges(Collector):
    def __init__(self, exporter: MetricsExporter) -> None:
        self._exporter = exporter

    def collect(self) -> Iterator[GaugeMetricFamily]:
        return self._exporter.live()


def _finished_task_runs(client: SyncPrefectClient, since: datetime) -> Iterator[TaskRun]:
    finished = TaskRunFilter(end_time=TaskRunFilterEndTime(after_=since))
    # Newest first: runs finishing while paging push older ones to later pages, so a
    # page may repeat a run (counted once, by id) but never skip one.
    offset = 0
    while True:
        page = client.read_task_runs(
            task_run_filter=finished, sort=TaskRunSort.END_TIME_DESC, limit=PAGE, offset=offset
        )
        yield from page
        if len(page) < PAGE:
            return
        offset += PAGE


def _events(client: SyncPrefectClient, since: datetime) -> Iterator[ReceivedEvent]:
    wanted = EventFilter(
        occurred=EventOccurredFilter(since=since, until=datetime.now(UTC) + OVERLAP),
        event=EventNameFilter(prefix=[MODEL_USAGE_EVENT, BREAKER_EVENT_PREFIX]),
    )
    page = client.read_events(filter=wanted, limit=EVENT_PAGE)
    while True:
        yield from page.events
        if page.next_page is None:
            return
        page = client.read_events_page(str(page.next_page))


def _flow_runs_by_state(client: SyncPrefectClient) -> dict[str, int]:
    return {
        state.value.lower(): client.count_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[state]))
            )
        )
        for state in StateType
    }


def _oldest_running_seconds(client: SyncPrefectClient, now: datetime) -> float:
    running = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))
        ),
        sort=FlowRunSort.START_TIME_ASC,
        limit=1,
    )
    started = running[0].start_time if running else None
    return (now - started).total_seconds() if started else 0.0


def _last_backup_timestamp(client: SyncPrefectClient, now: datetime) -> float:
    latest = client.read_events(
        filter=EventFilter(
            occurred=EventOccurredFilter(since=now - BACKUP_LOOKBACK, until=now + OVERLAP),
            event=EventNameFilter(name=[BACKUP_COMPLETED_EVENT]),
            order=EventOrder.DESC,
        ),
        limit=1,
    )
    return latest.events[0].occurred.timestamp() if latest.events else 0.0


def _breaker_gauge() -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(
        "aiorch_breaker_state",
        "1 for each breaker's current state (the one a caller would meet now).",
        labels=["breaker", "state"],
    )
    try:
        rows = breaker_rows()
    except BreakerStoreUnavailable as error:
        logger.warning("the breaker store could not be read: %s", error)
        rows = []
    for row in rows:
        for state in BreakerState:
            gauge.add_metric([row["breaker"], state.value], 1.0 if row["state"] == state else 0.0)
    return gauge


def _message_gauges() -> Iterator[GaugeMetricFamily]:
    # Dead letters stay in the machine's store on either transport; queue depth is the
    # store's only on the embedded bus (RabbitMQ's plugin exports the broker's).
    store = MessageStore.default()
    dead = GaugeMetricFamily(
        "aiorch_message_dead_letters",
        "Messages the bus gave up on, by the queue they were meant for "
        "(`aiorch messages dead-letters` lists them).",
        labels=["queue"],
    )
    for queue, count in store.dead_letter_counts().items():
        dead.add_metric([queue], count)
    yield dead
    if load_settings().message_broker_url is None:
        depth = GaugeMetricFamily(
            "aiorch_message_queue_depth",
            "Messages waiting or in flight on the embedded bus, by queue.",
            labels=["queue"],
        )
        for queue, count in store.depths().items():
            depth.add_metric([queue], count)
        yield depth
