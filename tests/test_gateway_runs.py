"""Work through the gateway as users do: a deployment, a real process worker, a flow run.

Every process here (the deploying script, the worker, the flow run it starts) reaches
the server only through ``aiorch gateway``, each with a token of its role; the flow run
emits events and logs over the gateway's websockets and HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import anyio
import httpx
import pytest
from prefect.events.clients import PrefectEventSubscriber
from prefect.events.filters import EventFilter, EventNameFilter
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings
from websockets.exceptions import ConnectionClosed

from aiorch.gateway.roles import Role
from aiorch.testing.gateway import GuardedServer
from aiorch.testing.workers import Worker
from tests.test_gateway import bearer, issue

PREFECT = str(Path(sys.executable).with_name("prefect"))
RUN_DEADLINE_SECONDS = 180.0
FLOW = """
from prefect import flow, get_run_logger, task


@task
def shout(text: str) -> str:
    return text.upper()


@flow
def guarded_hello(name: str = "gateway") -> str:
    get_run_logger().info("hello from behind the gateway")
    return shout(name)
"""


def _env(guarded: GuardedServer, token: str, home: Path) -> dict[str, str]:
    # The auth string, not the API key: Prefect's events client sends only it to a
    # server that is not Prefect Cloud (docs/security.md).
    return {
        **os.environ,
        "PREFECT_API_URL": guarded.api_url,
        "PREFECT_API_AUTH_STRING": f"worker:{token}",
        "PREFECT_HOME": str(home),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def test_a_worker_runs_a_deployment_through_the_gateway(
    guarded: GuardedServer, scratch_dir: Path
) -> None:
    admin, author, operator = (
        issue(guarded, role) for role in (Role.ADMIN, Role.AUTHOR, Role.OPERATOR)
    )
    (scratch_dir / "hello.py").write_text(FLOW)
    pool = f"guarded-{uuid4().hex[:6]}"
    created = subprocess.run(
        [PREFECT, "work-pool", "create", pool, "--type", "process"],
        env=_env(guarded, admin, scratch_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stderr
    deploy = textwrap.dedent(
        f"""
        from prefect import flow
        flow.from_source(source={str(scratch_dir)!r}, entrypoint="hello.py:guarded_hello").deploy(
            name="guarded", work_pool_name={pool!r}, print_next_steps=False
        )
        """
    )
    deployed = subprocess.run(
        [sys.executable, "-c", deploy],
        env=_env(guarded, author, scratch_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert deployed.returncode == 0, deployed.stderr
    worker = Worker(
        pool, "process", _env(guarded, operator, scratch_dir), scratch_dir / "worker.log"
    )
    try:
        with httpx.Client(base_url=guarded.api_url, headers=bearer(operator), timeout=30) as api:
            deployment = api.get("/deployments/name/guarded-hello/guarded").json()
            run = api.post(f"/deployments/{deployment['id']}/create_flow_run", json={}).json()
            deadline = time.monotonic() + RUN_DEADLINE_SECONDS
            while time.monotonic() < deadline:
                state = api.get(f"/flow_runs/{run['id']}").json()["state"]
                if state["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
                    break
                time.sleep(0.5)
            logs = _logs(api, run["id"], "hello from behind the gateway")
    finally:
        assert worker.stop() is not None
    assert state["type"] == "COMPLETED", (state, worker.log.read_text()[-3000:])
    assert "hello from behind the gateway" in logs
    audit = guarded.log.read_text()
    refused = [line for line in audit.splitlines() if operator.split("_")[1] in line]
    assert refused == []  # the worker and its flow run never asked beyond operator


def _logs(api: httpx.Client, run_id: str, expect: str) -> str:
    """The run's log messages, polled until ``expect`` arrives (logs ship in batches)."""
    deadline = time.monotonic() + 30
    while True:
        found = api.post("/logs/filter", json={"logs": {"flow_run_id": {"any_": [run_id]}}})
        text = "\n".join(log["message"] for log in found.json())
        if expect in text or time.monotonic() > deadline:
            return text
        time.sleep(0.3)


def test_websockets_stream_events_to_a_viewer_and_refuse_it_emitting(
    guarded: GuardedServer,
) -> None:
    viewer = issue(guarded, Role.VIEWER)
    operator = issue(guarded, Role.OPERATOR)
    name = f"aiorch.test.gateway-{uuid4().hex[:6]}"

    async def listen_and_emit() -> list[str]:
        received: list[str] = []
        with temporary_settings(
            updates={PREFECT_API_URL: guarded.api_url, PREFECT_API_AUTH_STRING: f"v:{viewer}"}
        ):
            subscriber = PrefectEventSubscriber(
                filter=EventFilter(event=EventNameFilter(name=[name])), reconnection_attempts=0
            )
            async with subscriber:
                with anyio.fail_after(60):
                    await _emit(guarded, operator, name)
                    async for event in subscriber:
                        received.append(event.event)
                        break
        return received

    assert anyio.run(listen_and_emit) == [name]
    with pytest.raises(ConnectionClosed, match=r"1008 \(policy violation\) Forbidden"):
        anyio.run(_emit, guarded, viewer, name)


async def _emit(guarded: GuardedServer, token: str, name: str) -> None:
    """Send one event over the events-in websocket, as Prefect's events client does."""
    from websockets.asyncio.client import connect
    from websockets.typing import Subprotocol

    url = guarded.api_url.replace("http", "ws", 1) + "/events/in"
    async with connect(url, subprotocols=[Subprotocol("prefect")]) as socket:
        await socket.send(json.dumps({"type": "auth", "token": f"me:{token}"}))
        answer = json.loads(await socket.recv())
        assert answer == {"type": "auth_success"}
        event = {
            "occurred": datetime.now(UTC).isoformat(),
            "event": name,
            "resource": {"prefect.resource.id": "aiorch.test"},
            "id": str(uuid4()),
        }
        await socket.send(json.dumps(event))
