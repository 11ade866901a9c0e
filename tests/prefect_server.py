"""Start and stop real services for tests (the Prefect server), polling with deadlines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

STARTUP_DEADLINE_SECONDS = 90.0
STOP_DEADLINE_SECONDS = 20.0


def wait_until_ready(
    url: str, process: subprocess.Popen[bytes], log: Path, deadline_seconds: float
) -> None:
    """Poll ``url`` until it answers 200; fail with the service's log if it never does."""
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {deadline_seconds}s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a service and everything it started (it runs in its own process group)."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_DEADLINE_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_DEADLINE_SECONDS)


@contextmanager
def running_server(
    home: Path,
    port: int,
    command: list[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """Run ``prefect server start`` on 127.0.0.1:``port`` with ``home``; yield the API URL."""
    home.mkdir(parents=True, exist_ok=True)
    log = home / f"server-{port}.log"
    server_env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_API_PORT": str(port),
        **(env or {}),
    }
    server_env.pop("PREFECT_API_URL", None)
    argv = command or [
        str(Path(sys.executable).with_name("prefect")),
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(
            argv,
            env=server_env,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        api_url = f"http://127.0.0.1:{port}/api"
        wait_until_ready(f"{api_url}/health", process, log, STARTUP_DEADLINE_SECONDS)
        yield api_url
    finally:
        stop(process)


def flow_run_log_text(run_id: UUID, expect: str, deadline_seconds: float = 30.0) -> str:
    """All log messages of a flow run, polled until ``expect`` shows up or the deadline.

    Prefect ships logs to the API in batches, so they arrive a little after the run.
    """
    deadline = time.monotonic() + deadline_seconds
    while True:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
            )
        text = "\n".join(log.message for log in logs)
        if expect in text or time.monotonic() > deadline:
            return text
        time.sleep(0.2)
