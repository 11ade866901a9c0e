"""Two or more processes share one breaker through SQLite and through PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from aiorch.tasks.resilience.breaker import BreakerState, CircuitBreaker
from aiorch.tasks.resilience.breaker_store import BreakerStore
from tests.breaker_worker import CONFIG

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, scratch_dir: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{scratch_dir / 'shared-breakers.sqlite'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def _worker(url: str, name: str, *action: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.breaker_worker", url, name, *action],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _answer(process: subprocess.Popen[str]) -> dict[str, Any]:
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    answer: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return answer


def test_a_breaker_opened_by_one_process_rejects_in_another(
    prefect_api: str, store_url: str
) -> None:
    name = f"shared-{uuid4().hex[:8]}"
    assert _answer(_worker(store_url, name, "fail", "4"))["state"] == "half_open"  # wait 0
    store = BreakerStore(store_url)
    try:
        here = CircuitBreaker(name, CONFIG.model_copy(update={"wait_seconds": 3600}), store=store)
        assert here.state() is BreakerState.OPEN
        assert not here.acquire().allowed
    finally:
        store.engine.dispose()


def test_half_open_probes_are_limited_across_processes(prefect_api: str, store_url: str) -> None:
    name = f"probes-{uuid4().hex[:8]}"
    assert _answer(_worker(store_url, name, "fail", "4"))["granted"] is False
    probes = [_worker(store_url, name, "probe") for _ in range(4)]
    granted = [_answer(process)["granted"] for process in probes]
    assert granted.count(True) == 1  # permitted_calls_in_half_open=1, across all processes


def test_a_probe_whose_process_was_killed_frees_its_slot_when_the_lease_ends(
    prefect_api: str, store_url: str
) -> None:
    name = f"lost-probe-{uuid4().hex[:8]}"
    assert _answer(_worker(store_url, name, "fail", "4"))["state"] == "half_open"  # wait 0
    holder = subprocess.Popen(
        [sys.executable, "-m", "tests.breaker_worker", store_url, name, "hold", "2"],
        cwd=ROOT,
        env={**os.environ, "PREFECT_API_URL": prefect_api},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert json.loads(holder.stdout.readline()) == {"granted": True}
    holder.send_signal(signal.SIGKILL)  # the probe's outcome is never recorded
    holder.wait(timeout=30)
    holder.stdout.close()
    assert holder.stdin is not None
    holder.stdin.close()
    store = BreakerStore(store_url)
    try:
        here = CircuitBreaker(name, CONFIG, store=store)
        refused = here.acquire()
        assert not refused.allowed  # the dead probe still holds the only slot...
        assert refused.retry_after is not None
        assert 0 < refused.retry_after <= 2
        deadline = time.monotonic() + 30
        while not (permit := here.acquire()).allowed:  # ...until its lease ends
            assert time.monotonic() < deadline, "the lost probe's slot was never freed"
            time.sleep(0.1)
        assert permit.probe
        here.record(permit, failed=False, duration=0.01)
        assert here.state() is BreakerState.CLOSED
    finally:
        store.engine.dispose()
