"""Deployments and workers for tests and benchmarks: real `prefect worker` processes.

Example:
    ```python
    from aiorch.testing.workers import Worker, run_deployment

    worker = Worker("aiorch-process", "process", env, Path("worker.log"))
    try:
        run = worker.complete("aiorch-demo/demo")
    finally:
        worker.stop()
    ```
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import docker
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import FlowRun

from aiorch.core.errors import ConfigurationError
from aiorch.core.services import STOP_DEADLINE_SECONDS, stop_process_group

RUN_DEADLINE_SECONDS = 240.0
IDLE_DEADLINE_SECONDS = 60.0
RUN_LABEL = "io.prefect.flow-run-id"


def run_deployment(name: str, parameters: dict[str, Any] | None = None) -> FlowRun:
    """Create a run of deployment ``name`` and poll it to a final state."""
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(name)
        run = client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
        deadline = time.monotonic() + RUN_DEADLINE_SECONDS
        while time.monotonic() < deadline:
            run = client.read_flow_run(run.id)
            if run.state is not None and run.state.is_final():
                return run
            time.sleep(0.5)
    raise TimeoutError(f"{name} run {run.id} not final after {RUN_DEADLINE_SECONDS}s")


def creation_to_completion(run: FlowRun) -> float:
    """Seconds from the run's creation to its end, both as the server recorded them."""
    if run.end_time is None:
        raise ConfigurationError(f"run: flow run {run.id} has not ended; pass a finished run")
    seconds: float = (run.end_time - run.created).total_seconds() if run.created else 0.0
    return seconds


class Worker:
    """A real ``prefect worker start`` process in its own session, stopped with SIGTERM."""

    def __init__(
        self, pool: str, kind: str, env: dict[str, str], log: Path, cwd: Path | None = None
    ) -> None:
        self.log = log
        self.kind = kind
        self.runs: list[UUID] = []
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                ["prefect", "worker", "start", "--pool", pool, "--type", kind],
                cwd=cwd,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def complete(self, deployment: str, parameters: dict[str, Any] | None = None) -> FlowRun:
        """Run ``deployment`` on this worker's pool and check it Completed."""
        run = run_deployment(deployment, parameters)
        self.runs.append(run.id)
        assert run.state is not None
        assert run.state.is_completed(), (run.state.message, self.log.read_text()[-3000:])
        return run

    def idle(self) -> bool:
        """Whether the worker is done with its runs: their processes and containers gone.

        A run is final on the server before its process exits or its container is
        removed, and a worker stopped in between waits for that (seen taking over 20 s
        on a loaded machine).
        """
        if child_processes(self.process.pid):
            return False
        if self.kind != "docker" or not self.runs:
            return True
        engine = docker.from_env()
        try:
            return not any(
                engine.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run}"})
                for run in self.runs
            )
        finally:
            engine.close()

    def stop(self) -> int:
        """SIGTERM once idle (background workers ignore SIGINT); the exit status.

        A worker still running ``STOP_DEADLINE_SECONDS`` after SIGTERM gets a second
        one, which Prefect's handler turns into SIGKILL (what ``docker stop`` and
        Kubernetes do after their grace period): in full test sessions Prefect 3.9's
        workers sometimes stayed idle after the first, with no run or child left.
        """
        deadline = time.monotonic() + IDLE_DEADLINE_SECONDS
        while self.process.poll() is None and not self.idle() and time.monotonic() < deadline:
            time.sleep(0.2)
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_DEADLINE_SECONDS)
            except subprocess.TimeoutExpired:
                print(f"{self.kind} worker still running after SIGTERM: sent another")
                stop_process_group(self.process)
        return self.process.returncode

    def stopped_by_its_signal_handler(self) -> bool:
        """Whether the worker ended on SIGTERM, by its own handling of it."""
        escalated = "Received SIGTERM. Sending SIGKILL" in self.log.read_text()
        return self.process.returncode in (0, -signal.SIGTERM, 128 + signal.SIGTERM) or (
            escalated and self.process.returncode == -signal.SIGKILL
        )


def child_processes(pid: int) -> list[int]:
    """The direct child processes of ``pid`` (none once it has exited)."""
    found: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found.extend(int(child) for child in children.read_text().split())
        except OSError:  # the thread or the process ended while being read
            continue
    return found


def pause_schedules(client: SyncPrefectClient) -> dict[str, Any]:
    """Pause every deployment's schedules and delete their runs; the schedules paused.

    Each deployment maps to its interval, or its cron expression.

    Deployed schedules are real: paused, the workers (and other tests sharing the server)
    see only the runs that were asked for.
    """
    seen: dict[str, Any] = {}
    for deployment in client.read_deployments():
        for schedule in client.read_deployment_schedules(deployment.id):
            dumped = schedule.schedule.model_dump()
            seen[deployment.name] = dumped.get("interval") or dumped.get("cron")
            client.update_deployment_schedule(deployment.id, schedule.id, active=False)
        for run in client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        ):
            client.delete_flow_run(run.id)
    return seen
