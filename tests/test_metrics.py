"""The Prometheus exporter on a real Prefect server, scraped by a real Prometheus."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prefect import flow
from prometheus_client.parser import text_string_to_metric_families

from aiorch.agent_blocks import Agent
from aiorch.core.services import free_port, running_service
from aiorch.metrics.server import MetricsServer
from aiorch.tasks.agents.task import run_agent
from aiorch.tasks.container import ContainerStep, run_step
from aiorch.tasks.messaging.envelope import DataPart, Envelope, parse_address
from aiorch.tasks.messaging.store import MessageStore
from tests.services import require_service

RULES = Path(__file__).parents[1] / "deployments" / "monitoring"
# The alerts the rules file defines; each must load, be tested and have a runbook entry.
ALERTS = [
    line.split(":", 1)[1].strip()
    for line in (RULES / "aiorch-alerts.yml").read_text().splitlines()
    if "- alert:" in line
]


def _require_promtool() -> str:
    promtool = shutil.which("promtool")
    require_service("promtool", promtool is not None, "apt-get install prometheus")
    assert promtool is not None
    return promtool


def test_the_alert_rules_are_valid_and_fire_as_their_tests_say() -> None:
    promtool = _require_promtool()

    def run(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [promtool, *arguments], cwd=RULES, capture_output=True, text=True, check=False
        )

    checked = run("check", "rules", "aiorch-alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 8 rules found" in checked.stdout
    tested = run("test", "rules", "aiorch-alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_runbook_entry() -> None:
    runbook = (Path(__file__).parents[1] / "docs" / "operations.md").read_text()
    assert len(ALERTS) == 8
    for alert in ALERTS:
        assert f"### {alert}" in runbook, f"docs/operations.md has no runbook entry for {alert}"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(text: str, name: str, **labels: str) -> float | None:
    return _samples(text).get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def metrics_server(prefect_api: str) -> Iterator[MetricsServer]:
    server = MetricsServer("127.0.0.1", 0).start()
    try:
        yield server
    finally:
        server.stop()


def _run_work(scratch_dir: Path) -> None:
    step = ContainerStep(
        name=f"metrics-step-{os.getpid()}-{time.monotonic_ns()}",
        image="busybox",
        commands=[[sys.executable, "-c", "print('counted')"]],
    )

    @flow(name="metrics-work")
    def work() -> None:
        run_step(step, "local", export_to=scratch_dir / "out")
        run_step(step, "local", export_to=scratch_dir / "again")  # served from cache
        run_agent(Agent(instruction="x", model="passthrough"), "hello metrics")

    work()


def _scrape_until(server: MetricsServer, ready: object, deadline_seconds: float = 30) -> str:
    deadline = time.monotonic() + deadline_seconds
    while True:
        text = httpx.get(server.url, timeout=30).text
        if (callable(ready) and ready(text)) or time.monotonic() > deadline:
            return text
        time.sleep(0.5)


def test_the_exporter_counts_steps_cache_hits_models_and_flow_runs(
    metrics_server: MetricsServer, scratch_dir: Path
) -> None:
    before = httpx.get(metrics_server.url, timeout=30).text
    assert _value(before, "aiorch_prefect_api_up") == 1.0
    _run_work(scratch_dir)

    def counted(text: str) -> bool:
        return (
            _value(text, "aiorch_steps_total", cache="hit") is not None
            and _value(text, "aiorch_model_requests_total", model="passthrough", replayed="false")
            is not None
        )

    text = _scrape_until(metrics_server, counted)
    assert _value(text, "aiorch_steps_total", cache="miss") == 1.0
    assert _value(text, "aiorch_steps_total", cache="hit") == 1.0
    assert _value(text, "aiorch_step_executions_total", runner="local", state="completed") == 1.0
    assert _value(text, "aiorch_step_executions_total", runner="local", state="cached") == 1.0
    assert _value(text, "aiorch_step_execution_seconds_count", runner="local") == 1.0
    assert _value(text, "aiorch_model_requests_total", model="passthrough", replayed="false") == 1.0
    assert _value(text, "aiorch_model_latency_seconds_count", model="passthrough") == 1.0
    assert (_value(text, "aiorch_flow_runs", state="completed") or 0) >= 1
    assert _value(text, "aiorch_flow_run_oldest_running_seconds") is not None
    # A second scrape counts nothing twice.
    again = httpx.get(metrics_server.url, timeout=30).text
    assert _value(again, "aiorch_steps_total", cache="miss") == 1.0
    assert httpx.get(metrics_server.url.replace("/metrics", "/other"), timeout=5).status_code == 404


def test_a_real_prometheus_scrapes_the_exporter(
    metrics_server: MetricsServer, scratch_dir: Path
) -> None:
    prometheus = shutil.which("prometheus")
    require_service("Prometheus", prometheus is not None, "apt-get install prometheus")
    assert prometheus is not None
    _run_work(scratch_dir)
    target = metrics_server.url.removeprefix("http://").removesuffix("/metrics")
    config = scratch_dir / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        f"rule_files:\n  - {RULES / 'aiorch-alerts.yml'}\n"
        "scrape_configs:\n"
        f"  - job_name: aiorch\n    static_configs:\n      - targets: ['{target}']\n"
    )
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    argv = [
        prometheus,
        f"--config.file={config}",
        f"--storage.tsdb.path={scratch_dir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with running_service(argv, {}, scratch_dir / "prometheus.log", f"{api}/-/ready", 60):
        deadline = time.monotonic() + 60
        while True:
            result = httpx.get(
                f"{api}/api/v1/query", params={"query": 'aiorch_steps_total{cache="hit"}'}
            ).json()["data"]["result"]
            if result or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert [float(series["value"][1]) for series in result] == [1.0]
        rules = httpx.get(f"{api}/api/v1/rules").json()["data"]["groups"]
        assert [group["name"] for group in rules] == ["aiorch"]
        assert [rule["name"] for rule in rules[0]["rules"]] == ALERTS


def test_the_backup_flow_is_seen_by_the_exporter(
    metrics_server: MetricsServer, scratch_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from prefect.settings import (
        PREFECT_LOCAL_STORAGE_PATH,
        PREFECT_SERVER_DATABASE_CONNECTION_URL,
        temporary_settings,
    )

    from aiorch.backup.archive import verify_backup
    from aiorch.flows.backup import backup

    database = scratch_dir / "prefect.db"
    sqlite3.connect(database).execute("create table runs (x)").connection.commit()
    monkeypatch.setenv("AIORCH_DATA_DIR", str(scratch_dir / "data"))
    settings = {
        PREFECT_SERVER_DATABASE_CONNECTION_URL: f"sqlite+aiosqlite:///{database}",
        PREFECT_LOCAL_STORAGE_PATH: scratch_dir / "storage",
    }
    with temporary_settings(updates=settings):
        made = Path(backup(destination=str(scratch_dir / "backups"), keep=1))
    manifest = verify_backup(made)
    assert [item.name for item in manifest.items] == [
        "prefect-database",
        "breakers",
        "gateway-tokens",
        "messages",
        "results",
    ]

    def seen(text: str) -> bool:
        return (_value(text, "aiorch_last_backup_timestamp_seconds") or 0) > 0

    text = _scrape_until(metrics_server, seen)
    stamp = _value(text, "aiorch_last_backup_timestamp_seconds") or 0
    assert abs(stamp - manifest.created_at.timestamp()) < 120


def test_the_exporter_reports_queue_depth_and_dead_letters_of_the_embedded_bus(
    metrics_server: MetricsServer, scratch_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIORCH_DATA_DIR", str(scratch_dir / "data"))
    monkeypatch.delenv("AIORCH_MESSAGE_BROKER_URL", raising=False)
    store = MessageStore.default()

    def envelope(number: int) -> Envelope:
        return Envelope(
            sender=parse_address("agent:counter"),
            recipient=parse_address("agent:slow"),
            kind="event",
            parts=[DataPart(data=number)],
        )

    for number in range(3):
        assert store.enqueue("agent:slow", envelope(number), now=time.time())
    store.dead_letter("agent:gone", envelope(9), "no such agent", now=time.time())

    text = httpx.get(metrics_server.url, timeout=30).text
    assert _value(text, "aiorch_message_queue_depth", queue="agent:slow") == 3.0
    assert _value(text, "aiorch_message_dead_letters", queue="agent:gone") == 1.0
    assert _value(text, "aiorch_message_dead_letters", queue="agent:slow") is None

    # On RabbitMQ the broker's own plugin reports depth; dead letters stay aiorch's.
    monkeypatch.setenv("AIORCH_MESSAGE_BROKER_URL", "amqp://guest:guest@127.0.0.1:1/")
    text = httpx.get(metrics_server.url, timeout=30).text
    assert "aiorch_message_queue_depth" not in text
    assert _value(text, "aiorch_message_dead_letters", queue="agent:gone") == 1.0
