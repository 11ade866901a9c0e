"""6. Prefect backend: sustained task runs per second, server on SQLite vs PostgreSQL.

Two real Prefect servers run side by side, one on its default SQLite database, one on a
PostgreSQL server started from Debian's binaries. Each round, a client process (a new
interpreter, so no client state is shared) runs a flow that submits ``TASKS`` trivial
tasks on 8 threads against one server; the rate is the number of task runs the server
has recorded as Completed divided by the time from the flow's start until the last of
them is recorded (polled through the API). Rounds alternate between the servers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
from prefect import flow, task
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from bench.harness import Comparison, NotRun, Row, Side, interleave
from tasks.services import free_port

TASKS = 200
THREADS = 8
RECORD_DEADLINE_SECONDS = 300.0


@task(name="noop")
def noop(index: int) -> int:
    """A trivial task: the server's bookkeeping is all there is to measure."""
    return index


@flow(name="bench-task-load", task_runner=ThreadPoolTaskRunner(max_workers=THREADS))  # type: ignore[arg-type]
def task_load(count: int) -> str:
    """Submit ``count`` trivial tasks; return the flow run id."""
    print(f"started {time.time()}", flush=True)
    noop.map(range(count)).result()
    return str(flow_run.get_id())


def _completed(api_url: str, run_id: str) -> int:
    response = httpx.post(
        f"{api_url}/task_runs/count",
        json={
            "flow_runs": {"id": {"any_": [run_id]}},
            "task_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
        },
        timeout=30,
    )
    response.raise_for_status()
    count: int = response.json()
    return count


def task_runs_per_second(api_url: str, count: int = TASKS) -> float:
    """Run the load against ``api_url`` in a new interpreter; the sustained rate."""
    env = {**os.environ, "PREFECT_API_URL": api_url}
    done = subprocess.run(
        [sys.executable, "-m", "bench.backends", str(count)],
        env=env,
        capture_output=True,
        text=True,
        timeout=RECORD_DEADLINE_SECONDS,
        check=True,
    )
    lines = done.stdout.splitlines()
    started = float(next(line for line in lines if line.startswith("started ")).split()[1])
    run_id = next(line for line in lines if line.startswith("run ")).split()[1]
    deadline = time.monotonic() + RECORD_DEADLINE_SECONDS
    while _completed(api_url, run_id) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{api_url}: {count} task runs not recorded in time")
        time.sleep(0.2)
    return count / (time.time() - started)


@contextmanager
def _server(home: Path, database_url: str | None) -> Iterator[str]:
    from tests.prefect_server import running_server

    env = {"PREFECT_API_DATABASE_CONNECTION_URL": database_url} if database_url else {}
    with running_server(home, free_port(), env=env) as api_url:
        yield api_url


def run(repeat: int) -> list[Row]:
    """SQLite vs PostgreSQL, interleaved."""
    from tests.postgres import postgres_bin, running_postgres

    name = "Prefect server: task runs per second"
    if postgres_bin() is None:
        return [NotRun(benchmark=name, reason="PostgreSQL is not installed")]
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aiorch-bench-")))
        postgres = stack.enter_context(running_postgres()).replace("+psycopg", "+asyncpg")
        sqlite_api = stack.enter_context(_server(scratch / "sqlite", None))
        postgres_api = stack.enter_context(_server(scratch / "postgres", postgres))
        sqlite, postgresql = interleave(
            lambda: task_runs_per_second(sqlite_api),
            lambda: task_runs_per_second(postgres_api),
            max(2, repeat // 3),
        )
    return [
        Comparison(
            benchmark=name,
            baseline=Side(label="SQLite", samples=sqlite),
            candidate=Side(label="PostgreSQL", samples=postgresql),
            unit="per s",
            note=f"{TASKS} trivial tasks on {THREADS} threads per round, counted when "
            "the server has recorded them Completed",
        )
    ]


if __name__ == "__main__":
    run_id = task_load(int(sys.argv[1]))
    print(f"run {run_id}", flush=True)
