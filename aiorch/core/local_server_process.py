"""The supervisor of a shared local Prefect server (see :mod:`aiorch.core.local_server`).

    python -m aiorch.core.local_server_process HOME HOST PORT IDLE_SECONDS

Runs ``prefect server start`` for HOME on HOST:PORT, watched by this process's guardian
(a ``kill -9`` of the supervisor stops the server too), and stops it on SIGTERM or once
no flow run has been active (created, updated, running) for IDLE_SECONDS.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import httpx

from aiorch.core.guardian import Guardian
from aiorch.core.local_server import LocalServerState, state_file
from aiorch.core.services import stop_process_group

CHECK_SECONDS = 15.0
ACTIVE_STATES = ["PENDING", "RUNNING", "CANCELLING", "PAUSED"]


def _last_activity(api_url: str) -> float | None:
    """When a flow run last changed (epoch seconds), now if one is active; None if unknown."""
    try:
        active = httpx.post(
            f"{api_url}/flow_runs/count",
            json={"flow_runs": {"state": {"type": {"any_": ACTIVE_STATES}}}},
            timeout=10,
        )
        if active.status_code == 200 and active.json() > 0:
            return time.time()
        latest = httpx.post(
            f"{api_url}/flow_runs/filter",
            json={"sort": "EXPECTED_START_TIME_DESC", "limit": 1},
            timeout=10,
        )
    except httpx.TransportError:
        return None
    runs = latest.json() if latest.status_code == 200 else []
    if not runs:
        return None
    return datetime.fromisoformat(runs[0]["updated"]).astimezone(UTC).timestamp()


def main(argv: list[str]) -> int:
    """Serve until stopped or idle."""
    home, host, port, idle_seconds = Path(argv[0]), argv[1], int(argv[2]), float(argv[3])
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_API_PORT": str(port),
    }
    env.pop("PREFECT_API_URL", None)
    prefect = str(Path(sys.executable).with_name("prefect"))
    server = subprocess.Popen(
        [prefect, "server", "start", "--host", host, "--port", str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    Guardian.of_process().watch(server.pid)
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    api_url = f"http://{host}:{port}/api"
    started = time.time()
    next_check = started + CHECK_SECONDS
    while not stopping and server.poll() is None:
        time.sleep(1)
        if time.time() < next_check:
            continue
        next_check = time.time() + CHECK_SECONDS
        last = max(_last_activity(api_url) or started, started)
        if time.time() - last > idle_seconds:
            print(f"aiorch: no flow-run activity for {idle_seconds:g} s; stopping", flush=True)
            break
    stop_process_group(server)
    _forget_if_mine(state_file(home))
    return 0


def _forget_if_mine(path: Path) -> None:
    """Remove the state file unless it records a newer server than this one."""
    try:
        recorded = LocalServerState.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return
    if recorded.supervisor_pid == os.getpid():
        path.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
