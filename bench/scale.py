"""Scale: deployment runs with 1, 2 and 4 process workers, and fan-outs of 10 to 1,000 steps.

Two real Prefect servers side by side, one on SQLite and one on PostgreSQL (Debian's
binaries).

- Workers: a deployment of a one-task flow on a process pool; ``RUNS`` flow runs are
  created at once and ``N`` real process workers (polling every second) take them; the
  sample is seconds per run: from creation until the last is final, over ``RUNS``. Each run
  is a new Python process, as in production. Timing starts once every worker polls.
- Fan-out: a flow maps ``N`` local container steps (``true``, cache off), and another
  ``N`` passthrough agent calls, in a new interpreter; the wall time, the peak memory
  (max RSS) of that flow process, the rows it made the server write (task runs, their
  states, logs, events, artifacts: counted in the server's database), and both per
  item, for 10, 100 and 1,000. The cost per item must not grow with the count: from 100
  to 1,000 the time per item stays within 20 %.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from uuid import UUID

from prefect import flow, task, unmapped
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlalchemy import create_engine, text

from aiorch.agent_blocks import Agent
from aiorch.tasks.agents.task import run_agent
from aiorch.tasks.container import ContainerStep, run_step
from aiorch.testing.workers import Worker
from bench.backends import _server
from bench.harness import Comparison, NotRun, Row, Section, Side, rotate

ROOT = Path(__file__).resolve().parents[1]
POOL = "bench-scale"
RUNS = 8
WORKERS = (1, 2, 4)
STEPS = (10, 100, 1000)
DEADLINE_SECONDS = 900.0
FLAT_WITHIN = 1.2
# What a flow run makes the server write, row by row.
WRITTEN_TABLES = ("task_run", "task_run_state", "flow_run_state", "log", "events", "artifact")


@task(name="scale-one")
def one() -> int:
    """The deployed flow's only task."""
    return 1


@flow(name="bench-scale-deployed")
def deployed() -> int:
    """A one-task flow, run by process workers from a deployment."""
    return one()


@flow(name="bench-scale-fan-out")
def fan_out(count: int) -> int:
    """Map ``count`` local steps that each run ``true``; how many succeeded."""
    steps = [
        ContainerStep(name=f"scale-{index}", image="busybox", commands=[["true"]])
        for index in range(count)
    ]
    results = run_step.map(steps, runner="local", cache=False).result()
    return sum(result.exit_code == 0 for result in results)


@flow(name="bench-scale-agent-fan-out")
def agent_fan_out(count: int) -> int:
    """Map ``count`` passthrough agent calls; how many answered."""
    agent = Agent(instruction="Repeat the user.", model="passthrough")
    prompts = [f"prompt {index}" for index in range(count)]
    results = run_agent.map(unmapped(agent), prompts).result()
    return sum(bool(result.text) for result in results)


FAN_OUTS = {"steps": fan_out, "agent-calls": agent_fan_out}


@contextmanager
def _client(api_url: str) -> Iterator[SyncPrefectClient]:
    with (
        temporary_settings(updates={PREFECT_API_URL: api_url}),
        get_client(sync_client=True) as client,
    ):
        yield client


def _deployment(api_url: str) -> UUID:
    with _client(api_url) as client:
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process"), overwrite=True)
        flow_id = client.create_flow_from_name("bench-scale-deployed")
        return client.create_deployment(
            flow_id=flow_id,
            name="scale",
            work_pool_name=POOL,
            entrypoint="bench/scale.py:deployed",
            path=str(ROOT),
        )


def _seconds_per_run(api_url: str, deployment: UUID, workers: int, scratch: Path) -> float:
    env = {
        **os.environ,
        "PREFECT_API_URL": api_url,
        # The workers' `prefect` command, from this interpreter's environment.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
    }
    running = [
        Worker(POOL, "process", env, scratch / f"worker-{index}-{time.time_ns()}.log", ROOT)
        for index in range(workers)
    ]
    try:
        _wait_until_polling(running)
        with _client(api_url) as client:
            started = time.monotonic()
            ids = [client.create_flow_run_from_deployment(deployment).id for _ in range(RUNS)]
            deadline = started + DEADLINE_SECONDS
            while True:
                runs = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids))
                )
                if all(run.state is not None and run.state.is_final() for run in runs):
                    elapsed = time.monotonic() - started
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{RUNS} runs not final within {DEADLINE_SECONDS} s")
                time.sleep(0.5)
    finally:
        for worker in running:
            worker.stop()
    failed = [run.id for run in runs if run.state is None or not run.state.is_completed()]
    if failed:
        raise RuntimeError(f"runs {failed} did not complete")
    return elapsed / RUNS


def _wait_until_polling(workers: list[Worker]) -> None:
    """Until every worker says it started (its start-up is not what is measured)."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not all("started" in worker.log.read_text(errors="replace") for worker in workers):
        if time.monotonic() > deadline:
            raise TimeoutError("the workers did not start")
        time.sleep(0.2)


def _rows_written(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return sum(
                int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
                for table in WRITTEN_TABLES
            )
    finally:
        engine.dispose()


def _fan_out(
    api_url: str, database_url: str, kind: str, count: int, scratch: Path
) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MB) and server rows written by a flow mapping ``count``."""
    env = {**os.environ, "PREFECT_API_URL": api_url}
    log = scratch / f"fan-out-{kind}-{count}-{time.time_ns()}.log"
    before = _rows_written(database_url)
    started = time.monotonic()
    with log.open("wb") as output:  # a file, not a pipe: 1,000 steps log more than a pipe holds
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.scale", kind, str(count)],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.monotonic() - started
    text_out = log.read_text(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0 or f"succeeded {count}" not in text_out:
        raise RuntimeError(f"the fan-out of {count} {kind} failed: {text_out[-1500:]}")
    # Logs and events the process shipped in its last moments land within a few seconds.
    written = _settled_rows(database_url, before)
    return elapsed, usage.ru_maxrss / 1024, written


def _settled_rows(database_url: str, before: int) -> int:
    deadline = time.monotonic() + 30
    last = _rows_written(database_url)
    while time.monotonic() < deadline:
        time.sleep(2)
        now = _rows_written(database_url)
        if now == last:
            break
        last = now
    return last - before


def _flatness(label: str, kind: str, per_item: dict[int, float]) -> Comparison:
    ratio_target = f"per item at 1,000 <= {FLAT_WITHIN} x at 100"
    return Comparison(
        benchmark=f"Scale, {kind} on {label}: time per item, 1,000 against 100",
        baseline=Side(label="100 mapped", samples=[per_item[100]]),
        candidate=Side(label="1,000 mapped", samples=[per_item[1000]]),
        target=ratio_target,
        met=per_item[1000] <= FLAT_WITHIN * per_item[100],
    )


def run(repeat: int) -> list[Row]:
    """Both servers; workers rotated per backend, fan-outs measured at each size."""
    from aiorch.testing.postgres import postgres_bin, running_postgres

    name = "Scale"
    if postgres_bin() is None:
        return [NotRun(benchmark=name, reason="PostgreSQL is not installed")]
    rows: list[Row] = []
    curve = [
        "| mapped | count | backend | wall time | per item | peak RSS of the flow process "
        "| server rows written | rows per item |"
    ]
    curve.append("|---|---|---|---|---|---|---|---|")
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aiorch-scale-")))
        postgres = stack.enter_context(running_postgres()).replace("+psycopg", "+asyncpg")
        servers = {
            "SQLite": stack.enter_context(_server(scratch / "sqlite", None)),
            "PostgreSQL": stack.enter_context(_server(scratch / "postgres", postgres)),
        }
        deployments = {label: _deployment(api_url) for label, api_url in servers.items()}
        samples: dict[str, dict[int, list[float]]] = {label: {} for label in servers}
        for workers in WORKERS:
            for label, measured in zip(
                servers,
                rotate(
                    [
                        partial(
                            _seconds_per_run, servers[label], deployments[label], workers, scratch
                        )
                        for label in servers
                    ],
                    max(1, repeat // 3),
                    warmup=0,
                ),
                strict=True,
            ):
                samples[label][workers] = measured
            rows.append(
                Comparison(
                    benchmark=f"Deployment run, {workers} process worker(s): seconds per run",
                    baseline=Side(label="SQLite", samples=samples["SQLite"][workers]),
                    candidate=Side(label="PostgreSQL", samples=samples["PostgreSQL"][workers]),
                    note=f"{RUNS} runs of a one-task flow created at once, their total time "
                    "divided by their number; each run is a new "
                    "process; workers poll every second",
                )
            )
        databases = {
            "SQLite": f"sqlite:///{scratch / 'sqlite' / 'prefect.db'}",
            "PostgreSQL": postgres.replace("+asyncpg", "+psycopg"),
        }
        for kind in FAN_OUTS:
            for label, api_url in servers.items():
                per_item: dict[int, float] = {}
                for count in STEPS:
                    seconds, megabytes, written = _fan_out(
                        api_url, databases[label], kind, count, scratch
                    )
                    per_item[count] = seconds / count
                    curve.append(
                        f"| {kind} | {count} | {label} | {seconds:.1f} s "
                        f"| {seconds / count * 1000:.0f} ms | {megabytes:.0f} MB "
                        f"| {written} | {written / count:.1f} |"
                    )
                rows.append(_flatness(label, kind, per_item))
    rows.append(Section(title="Fan-outs: cost per item", markdown="\n".join(curve)))
    return rows


if __name__ == "__main__":
    succeeded = FAN_OUTS[sys.argv[1]](int(sys.argv[2]))
    print(f"succeeded {succeeded}", flush=True)
