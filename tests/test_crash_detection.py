"""A flow run whose process is killed becomes Crashed within the documented bound."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import anyio
from prefect.client.orchestration import get_client

from aiorch.deploy.crash_detection import (
    CRASH_MESSAGE,
    HEARTBEAT_SECONDS,
    MISSED_HEARTBEATS,
    install_crash_detection,
)
from tests.processes import descendants, wait_until_gone

ROOT = Path(__file__).resolve().parents[1]
# The automation's window, plus the server's evaluation of proactive triggers.
CRASH_BOUND_SECONDS = HEARTBEAT_SECONDS * MISSED_HEARTBEATS + 15
SCRIPT = """
import sys
from prefect import flow
from prefect.runtime import flow_run
from aiorch.tasks.container import ContainerStep, run_step

@flow(name="crash-detection-test")
def waits(gate: str) -> None:
    print(flow_run.get_id(), flush=True)
    run_step(ContainerStep(name="waits", image="unused", commands=[["sh", "-c",
        f"while [ ! -e {gate} ]; do sleep 0.1; done"]]), "local", cache=False)

waits(sys.argv[1])
"""


def _state(run_id: UUID) -> tuple[str, str | None]:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
    assert state is not None
    return str(state.name), state.message


def test_a_killed_flow_run_becomes_crashed(prefect_api: str, scratch_dir: Path) -> None:
    automation = anyio.run(install_crash_detection)
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(scratch_dir / "gate")],
            cwd=ROOT,
            env={
                **os.environ,
                "PREFECT_API_URL": prefect_api,
                "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert process.stdout is not None
        run_id = UUID(process.stdout.readline().strip())
        deadline = time.monotonic() + 60
        while _state(run_id)[0] != "Running" or not descendants(process.pid):
            assert time.monotonic() < deadline, "the flow never started its step"
            time.sleep(0.2)
        helpers = descendants(process.pid)
        process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        process.wait(timeout=30)
        wait_until_gone(helpers, deadline_seconds=10)
        while (state := _state(run_id))[0] != "Crashed":
            elapsed = time.monotonic() - killed
            assert elapsed < CRASH_BOUND_SECONDS, f"still {state[0]} {elapsed:.0f} s after"
            time.sleep(1)
        print(f"Crashed {time.monotonic() - killed:.1f} s after kill -9")
        assert state[1] == CRASH_MESSAGE
    finally:

        async def remove() -> None:
            async with get_client() as client:
                await client.delete_automation(automation)

        anyio.run(remove)
