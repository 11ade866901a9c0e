"""The local Prefect server aiorch's commands share on one PREFECT_HOME (no API URL)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from aiorch.core.local_server import LocalServer
from aiorch.core.services import free_port
from tests.processes import descendants, wait_until_gone

ROOT = Path(__file__).resolve().parents[1]
COMMAND_DEADLINE_SECONDS = 300


def _environment(home: Path, port: int) -> dict[str, str]:
    env = {**os.environ, "PREFECT_HOME": str(home), "AIORCH_UI_PORT": str(port)}
    env.pop("PREFECT_API_URL", None)
    return env


def test_four_commands_started_at_once_share_one_server(scratch_dir: Path) -> None:
    home, port = scratch_dir / "home", free_port()
    env = _environment(home, port)
    commands = [
        subprocess.Popen(
            [sys.executable, "-m", "aiorch.cli", "run", "breaker-states"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [command.communicate(timeout=COMMAND_DEADLINE_SECONDS)[0] for command in commands]
    server = LocalServer(home, port=port)
    state = server.running()
    try:
        for command, output in zip(commands, outputs, strict=True):
            assert command.returncode == 0, output
            assert "state: Completed" in output, output
            assert " ERROR " not in output, output
        apis = {re.search(r"^Prefect API: (\S+)", output, re.M).group(1) for output in outputs}  # type: ignore[union-attr]
        assert state is not None
        assert apis == {state.api_url}  # one server, which all four used
        assert re.search(rf"^Prefect UI: {state.ui_url}/v2/runs/flow-run/", outputs[0], re.M)
        # Prefect's own log line links the V2 UI too, not the V1 pages.
        assert f"View at {state.ui_url}/v2/runs/flow-run/" in outputs[0], outputs[0]
    finally:
        if state is not None:
            started = {state.supervisor_pid, *descendants(state.supervisor_pid)}
            stopped = subprocess.run(
                [sys.executable, "-m", "aiorch.cli", "server", "stop"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert stopped.stdout.strip() == "stopped", stopped.stdout + stopped.stderr
            wait_until_gone(started, deadline_seconds=30)  # the supervisor, Prefect's server
    assert server.running() is None


def test_the_server_stops_itself_when_idle(scratch_dir: Path) -> None:
    server = LocalServer(scratch_dir / "home", port=free_port(), idle_seconds=1)
    state = server.ensure()
    started = {state.supervisor_pid, *descendants(state.supervisor_pid)}
    deadline = time.monotonic() + 90
    while server.running() is not None:
        assert time.monotonic() < deadline, "the idle server never stopped"
        time.sleep(0.5)
    wait_until_gone(started, deadline_seconds=30)
    assert not (scratch_dir / "home" / "aiorch-local-server.json").exists()
