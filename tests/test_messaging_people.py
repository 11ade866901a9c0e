"""People on the bus: a request to a person pauses (or suspends) the run until they answer."""

from __future__ import annotations

import contextvars
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateName,
)
from prefect.client.schemas.objects import FlowRun

from aiorch.core.guardian import Guardian
from aiorch.core.services import stop_process_group
from aiorch.testing.fault_proxy import running_fault_proxy
from tests.person_flow import draft_then_ask

ROOT = Path(__file__).resolve().parents[1]
DEADLINE_SECONDS = 180.0


def _wait_for(run_id: UUID, wanted: set[str]) -> FlowRun:
    deadline = time.monotonic() + DEADLINE_SECONDS
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(run_id)
            if run.state is not None and run.state.name in wanted:
                return run
            if run.state is not None and run.state.is_final():
                pytest.fail(f"flow run ended {run.state.name}: {run.state.message}")
            time.sleep(0.2)
    pytest.fail(f"flow run {run_id} never reached {wanted}")


def _paused_run(flow_name: str, runner: threading.Thread) -> FlowRun:
    deadline = time.monotonic() + DEADLINE_SECONDS
    paused = FlowRunFilter(state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Paused"])))
    by_flow = FlowFilter(name=FlowFilterName(any_=[flow_name]))
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline and runner.is_alive():
            # Filtered by the server: a busy session server holds many other runs.
            found = client.read_flow_runs(flow_run_filter=paused, flow_filter=by_flow, limit=1)
            if found:
                return found[0]
            time.sleep(0.2)
    pytest.fail("no flow run paused")


def _answer(run_id: UUID, answer: dict[str, Any]) -> None:
    with get_client(sync_client=True) as client:
        client.resume_flow_run(run_id, run_input=answer)


def _question(run_id: UUID) -> str:
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        assert run.state is not None
        keyset = run.state.state_details.run_input_keyset
        assert keyset is not None
        value = client.read_flow_run_input(run_id, keyset["description"])
    return str(value)


def test_a_request_to_a_person_pauses_the_run_and_their_answer_is_the_reply(
    prefect_api: str, scratch_dir: Path
) -> None:
    result: dict[str, Any] = {}

    def run() -> None:
        result.update(anyio.run(draft_then_ask, None, str(scratch_dir / "messages.sqlite")))

    # The session's API URL is a context variable: the thread gets a copy.
    thread = threading.Thread(target=contextvars.copy_context().run, args=(run,))
    thread.start()
    try:
        paused = _paused_run("aiorch-person-test", thread)
        question = _question(paused.id)
        assert "**agent:release** asks **person:ada**" in question
        assert "Publish this draft? Say hello to the release team." in question
        _answer(paused.id, {"reply": "ship it", "approve": True})
    finally:
        thread.join(timeout=DEADLINE_SECONDS)
    assert result["reply"] == ["ship it"]
    assert result["answer"]["approve"] is True
    assert result["from"] == "person:ada"
    assert _wait_for(paused.id, {"Completed"}).state_name == "Completed"


def test_a_suspended_run_resumes_with_the_answer_and_replays_the_agent_call(
    prefect_api: str, local_model: str, scratch_dir: Path
) -> None:
    name = f"replay-{scratch_dir.name}"
    log = (scratch_dir / "serve.log").open("wb")
    served = subprocess.Popen(
        [sys.executable, "-m", "tests.person_flow", "serve", name],
        cwd=ROOT,
        env={**os.environ, "PREFECT_API_URL": prefect_api},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    guardian = Guardian.of_process()
    guardian.watch(served.pid)
    try:
        with running_fault_proxy(upstream=local_model) as proxy:
            run_id = _start(f"aiorch-person-test/{name}", proxy.base_url, scratch_dir, served)
            suspended = _wait_for(run_id, {"Suspended"})
            assert len(proxy.received) == 1  # the draft, asked once
            assert "ada" in _question(suspended.id)
            _answer(run_id, {"reply": "", "approve": False})
            _wait_for(run_id, {"Completed"})
            assert len(proxy.received) == 1, "the agent call ran again instead of replaying"
            with get_client(sync_client=True) as client:
                final = client.read_flow_run(run_id)
                states = [state.name for state in client.read_flow_run_states(run_id)]
            assert states.count("Running") == 2, states  # it ran again, from the top
            assert final.state is not None
            value = final.state.result()
            assert value["answer"]["approve"] is False
            assert value["draft"]
    finally:
        stop_process_group(served)
        guardian.forget(served.pid)
        log.close()


def _start(
    deployment: str, base_url: str, scratch_dir: Path, served: subprocess.Popen[bytes]
) -> UUID:
    deadline = time.monotonic() + DEADLINE_SECONDS
    flow_name, _, name = deployment.partition("/")
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline and served.poll() is None:
            found = client.read_deployments(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name]))
            )
            if found:
                run = client.create_flow_run_from_deployment(
                    found[0].id,
                    parameters={
                        "base_url": base_url,
                        "store": str(scratch_dir / "messages.sqlite"),
                        "suspend": True,
                    },
                )
                return run.id
            time.sleep(0.2)
    log = (scratch_dir / "serve.log").read_text(errors="replace")[-3000:]
    pytest.fail(f"deployment {deployment} ({flow_name}) was never served:\n{log}")
