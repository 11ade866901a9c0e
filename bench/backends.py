"""6. Prefect backend: sustained task runs per second, server on SQLite vs PostgreSQL.

Two real Prefect servers run side by side, one on its default SQLite database, one on a
PostgreSQL server started from Debian's binaries. Each round, client processes (new
interpreters, so no client state is shared) each run a flow that submits ``TASKS``
trivial tasks on 8 threads against one server; the rate is the number of task runs the
server has recorded as Completed divided by the time from the first flow's start until
the last of them is recorded (polled through the API). Rounds alternate between the
servers. One client is one busy flow; several clients are what a busy work pool sends,
where SQLite's single writer is expected to give out first.
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

import httpx
from prefect import flow, task
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from aiorch.core.services import free_port
from bench.harness import Comparison, NotRun, Row, Side, interleave

TASKS = 200
THREADS = 8
CLIENTS = (1, 4)
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


def _completed(api_url: str, run_ids: list[str], auth_string: str | None = None) -> int:
    response = httpx.post(
        f"{api_url}/task_runs/count",
        json={
            "flow_runs": {"id": {"any_": run_ids}},
            "task_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
        },
        auth=tuple(auth_string.split(":", 1)) if auth_string else None,  # type: ignore[arg-type]
        timeout=30,
    )
    response.raise_for_status()
    count: int = response.json()
    return count


def task_runs_per_second(
    api_url: str, clients: int = 1, count: int = TASKS, auth_string: str | None = None
) -> float:
    """Run the load against ``api_url`` from ``clients`` new interpreters; the rate.

    ``auth_string`` (``NAME:PASSWORD``) is sent as Prefect's clients send
    ``PREFECT_API_AUTH_STRING``.
    """
    env = {**os.environ, "PREFECT_API_URL": api_url}
    if auth_string:
        env["PREFECT_API_AUTH_STRING"] = auth_string
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.backends", str(count)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(clients)
    ]
    # Every client is waited for before any failure is raised: none is left running.
    outputs = [process.communicate(timeout=RECORD_DEADLINE_SECONDS) for process in processes]
    starts, run_ids = [], []
    for process, (out, err) in zip(processes, outputs, strict=True):
        if process.returncode != 0:
            raise RuntimeError(
                f"{api_url}: a load client exited with {process.returncode}: {err[-1000:]}"
            )
        lines = out.splitlines()
        starts.append(float(next(line for line in lines if line.startswith("started ")).split()[1]))
        run_ids.append(next(line for line in lines if line.startswith("run ")).split()[1])
    deadline = time.monotonic() + RECORD_DEADLINE_SECONDS
    while _completed(api_url, run_ids, auth_string) < count * clients:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{api_url}: {count * clients} task runs not recorded in time")
        time.sleep(0.2)
    return count * clients / (time.time() - min(starts))


@contextmanager
def _server(home: Path, database_url: str | None) -> Iterator[str]:
    from aiorch.testing.prefect_server import running_server

    env = {"PREFECT_API_DATABASE_CONNECTION_URL": database_url} if database_url else {}
    with running_server(home, free_port(), env=env) as api_url:
        yield api_url


def run(repeat: int) -> list[Row]:
    """SQLite vs PostgreSQL, interleaved."""
    from aiorch.testing.postgres import postgres_bin, running_postgres

    name = "Prefect server: task runs per second"
    if postgres_bin() is None:
        return [NotRun(benchmark=name, reason="PostgreSQL is not installed")]
    rows: list[Row] = []
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aiorch-bench-")))
        postgres = stack.enter_context(running_postgres()).replace("+psycopg", "+asyncpg")
        sqlite_api = stack.enter_context(_server(scratch / "sqlite", None))
        postgres_api = stack.enter_context(_server(scratch / "postgres", postgres))
        for clients in CLIENTS:
            sqlite, postgresql = interleave(
                partial(task_runs_per_second, sqlite_api, clients),
                partial(task_runs_per_second, postgres_api, clients),
                max(2, repeat // 3),
            )
            rows.append(
                Comparison(
                    benchmark=f"{name}, {clients} flow{'s' if clients > 1 else ''} at once",
                    baseline=Side(label="SQLite", samples=sqlite),
                    candidate=Side(label="PostgreSQL", samples=postgresql),
                    unit="per s",
                    note=f"{clients} client process(es), each a flow of {TASKS} trivial tasks "
                    f"on {THREADS} threads, counted when the server has recorded them Completed",
                )
            )
    return rows


if __name__ == "__main__":
    run_id = task_load(int(sys.argv[1]))
    print(f"run {run_id}", flush=True)
