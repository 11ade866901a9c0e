"""Alert rules emit events; automations defined as code carry them to a real webhook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from prefect import flow
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.events import emit_event
from prefect.runtime import flow_run

from aiorch.tasks.container import ContainerStep, run_step
from aiorch.tasks.monitoring.alerts import (
    FAILURE_RATE_EVENT,
    SLOW_STEP_EVENT,
    Alert,
    AlertRules,
    check_alerts,
)
from aiorch.tasks.resilience.breaker import CircuitBreaker
from aiorch.testing.prefect_server import poll_events

ROOT = Path(__file__).resolve().parents[1]
DEADLINE_SECONDS = 60.0
QUICK_RULES = AlertRules(
    slow_step_factor=2, baseline_runs=2, minimum_step_seconds=0.3, window_runs=3, minimum_runs=3
)


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP receiver; yields its URL and the JSON bodies it got."""
    received: list[dict[str, Any]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            received.append(json.loads(self.rfile.read(length) or b"{}"))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received
    finally:
        server.shutdown()
        server.server_close()


def _install(api_url: str, webhook_block: str) -> subprocess.CompletedProcess[str]:
    """Run ``deployments/automations.py`` against the test server, as a deploy would."""
    return subprocess.run(
        [sys.executable, "deployments/automations.py", "--webhook-block", webhook_block],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PREFECT_API_URL": api_url},
    )


def _wait_for(received: list[dict[str, Any]], text: str) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        for body in list(received):
            if text in json.dumps(body):
                return body
        time.sleep(0.2)
    raise AssertionError(f"no webhook call mentioning {text!r}; got {received}")


def test_a_step_slower_than_its_baseline_raises_an_alert(prefect_api: str) -> None:
    name = f"timed-{uuid4().hex[:6]}"
    found: list[Alert] = []

    async def check(flow: Any, flow_run: Any, state: Any) -> None:
        found.extend(await check_alerts(flow_run, state, QUICK_RULES, flow.name))

    @flow(name="alerts-slow-test", on_completion=[check])
    def timed(seconds: float) -> UUID:
        step = ContainerStep(name=name, image="busybox", commands=[["sleep", str(seconds)]])
        run_step(step, "local", cache=False)
        return UUID(flow_run.get_id())

    timed(0.05)
    timed(0.05)
    assert found == []  # no baseline yet, then within it
    slow_run = timed(1.0)
    slow = [alert for alert in found if alert.event == SLOW_STEP_EVENT]
    assert len(slow) == 1
    assert slow[0].payload["step"] == f"{name}-execute-local"
    assert slow[0].payload["factor"] > 2
    events = poll_events(
        prefect_api, f"prefect.flow-run.{slow_run}", count=1, names=[SLOW_STEP_EVENT]
    )
    assert events[0]["payload"]["step"] == f"{name}-execute-local"


@pytest.mark.logs_errors("RuntimeError")
def test_a_flow_failing_too_often_raises_an_alert(prefect_api: str) -> None:
    found: list[Alert] = []

    async def check(flow: Any, flow_run: Any, state: Any) -> None:
        found.extend(await check_alerts(flow_run, state, QUICK_RULES, flow.name))

    flow_name = f"alerts-failing-{uuid4().hex[:6]}"

    @flow(name=flow_name, on_failure=[check], on_completion=[check])
    def sometimes(fail: bool) -> None:
        if fail:
            raise RuntimeError("broken today")

    sometimes(False)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            sometimes(True)
    rates = [alert for alert in found if alert.event == FAILURE_RATE_EVENT]
    assert len(rates) == 1
    assert rates[0].payload == {
        "flow": flow_name,
        "failed": 2,
        "runs": 3,
        "rate_percent": pytest.approx(66.7, abs=0.1),
    }


def test_automations_as_code_reach_a_webhook(
    prefect_api: str, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = webhook
    CustomWebhookNotificationBlock(
        name="aiorch-test",
        url=url,
        json_data={"subject": "{{subject}}", "body": "{{body}}"},
        allow_private_urls=True,
    ).save("aiorch-test-alerts", overwrite=True)

    first, second = (_install(prefect_api, "aiorch-test-alerts") for _ in range(2))
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout  # the same ids: updated in place, not duplicated

    name = f"alerting-{uuid4().hex[:8]}"
    breaker = CircuitBreaker(name)
    for _ in range(breaker.config.minimum_calls):
        with pytest.raises(RuntimeError), breaker.guard():
            raise RuntimeError("dependency down")
    body = _wait_for(received, name)
    assert body["subject"] == "aiorch alert: aiorch.breaker.open"
    assert f"aiorch.breaker.{name}" in body["body"]

    # A run set Crashed (by Prefect, or by the crash detection when its heartbeats
    # stopped, tests/test_crash_detection.py) is announced too.
    crashed = f"prefect.flow-run.{uuid4()}"
    emit_event(event="prefect.flow-run.Crashed", resource={"prefect.resource.id": crashed})
    body = _wait_for(received, crashed)
    assert body["subject"] == "aiorch alert: prefect.flow-run.Crashed"


def test_missing_webhook_block_is_named(prefect_api: str) -> None:
    result = _install(prefect_api, "no-such-block")
    assert result.returncode == 2
    assert "no CustomWebhookNotificationBlock block named 'no-such-block'" in result.stderr
