"""Start and stop real services for tests (the Prefect server), polling with deadlines."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

from aiorch.core.services import running_service

STARTUP_DEADLINE_SECONDS = 90.0


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
    api_url = f"http://127.0.0.1:{port}/api"
    with running_service(argv, server_env, log, f"{api_url}/health", STARTUP_DEADLINE_SECONDS):
        yield api_url


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


def poll_events(
    api_url: str,
    resource_id: str | None,
    count: int,
    deadline_seconds: float = 30.0,
    names: list[str] | None = None,
    since: datetime | None = None,
    headers: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Events about ``resource_id`` (named ``names``), oldest first, until ``count`` came.

    Prefect ships events in the background, so they reach the server a little later.
    """
    deadline = time.monotonic() + deadline_seconds
    event_filter: dict[str, Any] = {"order": "ASC"}
    if resource_id is not None:
        event_filter["resource"] = {"id": [resource_id]}
    if names:
        event_filter["event"] = {"name": names}
    if since is not None:
        event_filter["occurred"] = {"since": since.isoformat()}
    while True:
        response = httpx.post(
            f"{api_url}/events/filter",
            json={"filter": event_filter, "limit": 50},
            headers=headers,
            timeout=10,
        )
        response.raise_for_status()
        events: list[dict[str, Any]] = response.json()["events"]
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.2)
