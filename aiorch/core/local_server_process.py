"""The supervisor of a shared local Prefect server (see :mod:`aiorch.core.local_server`).

    python -m aiorch.core.local_server_process HOME HOST PORT IDLE_SECONDS

Runs ``prefect server start`` for HOME on HOST:PORT under
:func:`aiorch.core.supervisor.supervise`, and stops it on SIGTERM or once no flow run has
been active (created, updated, running) for IDLE_SECONDS.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from aiorch.core.local_server import LocalServerState, state_file
from aiorch.core.supervisor import supervise

CHECK_SECONDS = 15.0
ACTIVE_STATES = ["PENDING", "RUNNING", "CANCELLING", "PAUSED"]


def _last_activity(api_url: str) -> float | None:
    """When a flow run last changed (epoch seconds), now if one is active; None if no run.

    A server that does not answer yet is still starting (on a loaded machine that takes
    longer than a short idle window): it counts as active, never as idle.
    """
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
        return time.time()
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
    api_url = f"http://{host}:{port}/api"
    started = time.time()

    def idle() -> bool:
        last = max(_last_activity(api_url) or started, started)
        return time.time() - last > idle_seconds

    supervise(
        [prefect, "server", "start", "--host", host, "--port", str(port)],
        idle,
        CHECK_SECONDS,
        env,
    )
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
