"""A flow run whose process is killed becomes Crashed within the documented bound, on
every runner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import anyio
import docker
from prefect.client.orchestration import get_client

from aiorch.deploy.crash_detection import (
    CRASH_BOUND_SECONDS,
    CRASH_MESSAGE,
    HEARTBEAT_SECONDS,
    install_crash_detection,
)
from aiorch.tasks.container.runners.docker import STEP_LABEL
from tests.processes import descendants, wait_until_gone

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import sys
from prefect import flow
from prefect.runtime import flow_run
from aiorch.tasks.container import ContainerStep, run_step

@flow(name="crash-detection-test")
def waits(runner: str, image: str, started: str) -> None:
    print(flow_run.get_id(), flush=True)
    step = ContainerStep(name=f"waits-{runner}", image=image,
                         commands=[["sh", "-c", f"touch {started} 2>/dev/null; sleep 120"]])
    run_step(step, runner, cache=False)

waits(sys.argv[1], sys.argv[2], sys.argv[3])
"""


def _state(run_id: UUID) -> tuple[str, str | None]:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
    assert state is not None
    return str(state.name), state.message


def test_killed_flow_runs_become_crashed_on_every_runner(
    prefect_api: str,
    scratch_dir: Path,
    busybox_image: str,
    dagger_double: Path,
    docker_client: docker.DockerClient,
) -> None:
    automation = anyio.run(install_crash_detection)
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_api,
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS),
    }
    try:
        # One flow per runner, killed together: the waits for Crashed overlap.
        flows = {}
        for runner in ("local", "docker", "dagger"):
            started = scratch_dir / f"{runner}-started"  # a host path: local and dagger
            process = subprocess.Popen(
                [sys.executable, "-c", SCRIPT, runner, busybox_image, str(started)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            assert process.stdout is not None
            flows[runner] = (process, UUID(process.stdout.readline().strip()), started)
        deadline = time.monotonic() + 120
        for runner, (process, _, started) in flows.items():
            while not _step_running(runner, started, docker_client):
                assert process.poll() is None, f"the {runner} flow ended before its step ran"
                assert time.monotonic() < deadline, f"the {runner} step never started"
                time.sleep(0.2)
        helpers = set().union(*(descendants(process.pid) for process, _, _ in flows.values()))
        for process, _, _ in flows.values():
            process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        for process, _, _ in flows.values():
            process.wait(timeout=30)
        wait_until_gone(helpers, deadline_seconds=15)
        for runner, (_, run_id, _) in flows.items():
            while (state := _state(run_id))[0] != "Crashed":
                elapsed = time.monotonic() - killed
                assert elapsed < CRASH_BOUND_SECONDS, f"{runner}: {state[0]} {elapsed:.0f} s on"
                time.sleep(1)
            print(f"{runner}: Crashed {time.monotonic() - killed:.1f} s after kill -9")
            assert state[1] == CRASH_MESSAGE
    finally:

        async def remove() -> None:
            async with get_client() as client:
                await client.delete_automation(automation)

        anyio.run(remove)


def _step_running(runner: str, started: Path, client: docker.DockerClient) -> bool:
    if runner != "docker":
        return started.exists()
    labelled = client.containers.list(filters={"label": f"{STEP_LABEL}=waits-docker"})
    return bool(labelled)
