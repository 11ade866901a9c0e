"""A flow killed mid-run and rerun does not recompute finished steps and loses nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEADLINE_SECONDS = 120.0


def _start(output: Path, gate: Path, api_url: str) -> subprocess.Popen[str]:
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "PREFECT_API_URL": api_url}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.resume_flow", str(output), str(gate)],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_a_killed_flow_reruns_without_recomputing_finished_steps(
    prefect_api: str, scratch_dir: Path
) -> None:
    output, gate = scratch_dir / "outputs", scratch_dir / "gate"
    first = _start(output, gate, prefect_api)
    deadline = time.monotonic() + DEADLINE_SECONDS
    # Wait until step two's outputs are restored: steps one and two are finished.
    while not (output / "resume-two" / "out" / "value").exists():
        assert first.poll() is None, first.communicate()[0]
        assert time.monotonic() < deadline, "steps one and two never finished"
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)  # the process dies while step three waits
    first.wait(timeout=30)
    assert not (output / "resume-three").exists()  # no partial result of step three
    ran_before = {
        name: (output / name / "out" / "ran").read_text() for name in ("resume-one", "resume-two")
    }

    gate.touch()
    rerun = _start(output, gate, prefect_api)
    log, _ = rerun.communicate(timeout=DEADLINE_SECONDS)
    assert rerun.returncode == 0, log
    printed = [line for line in log.splitlines() if line.startswith("[")]
    assert printed == ["[True, True, False]"]  # steps one and two came from the cache
    for name in ("resume-one", "resume-two"):
        assert (output / name / "out" / "ran").read_text() == ran_before[name]
    values = [
        (output / name / "out" / "value").read_text().strip()
        for name in ("resume-one", "resume-two", "resume-three")
    ]
    assert values == ["one", "two", "three"]


def test_a_lock_whose_holder_died_is_taken_over(scratch_dir: Path) -> None:
    from aiorch.core.prefect_internals import lock_manager

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=30)
    manager = lock_manager(scratch_dir / "locks")
    path = manager._lock_path_for_key("step-key")
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = {"holder": "killed", "expiration": None, "host": socket.gethostname()}
    path.write_text(json.dumps({**holder, "pid": dead.pid}))
    assert manager.acquire_lock("step-key", "rerun", acquire_timeout=5)
    manager.release_lock("step-key", "rerun")

    path.write_text(json.dumps({**holder, "pid": os.getpid()}))  # a live holder keeps it
    assert not manager.acquire_lock("step-key", "other", acquire_timeout=0.3)
