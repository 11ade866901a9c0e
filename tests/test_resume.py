"""A flow killed mid-run leaves nothing running, and its rerun (or a process that was
waiting for the same step) does not recompute finished steps and loses nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.processes import descendants, wait_until_gone

ROOT = Path(__file__).resolve().parents[1]
DEADLINE_SECONDS = 120.0
# What "a few seconds" means for helpers of a killed process (the guardian's own bound).
LEFTOVER_DEADLINE_SECONDS = 10.0


def _start(
    output: Path, gate: Path, ledger: Path, api_url: str, temp: Path | None = None
) -> subprocess.Popen[str]:
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "PREFECT_API_URL": api_url}
    if temp is not None:
        temp.mkdir(exist_ok=True)
        environment["TMPDIR"] = str(temp)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.resume_flow", str(output), str(gate), str(ledger)],
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
    output, gate, ledger = scratch_dir / "outputs", scratch_dir / "gate", scratch_dir / "ledger"
    first = _start(output, gate, ledger, prefect_api)
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
    rerun = _start(output, gate, ledger, prefect_api)
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


def _wait_for(path: Path, process: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not path.exists():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.05)


def test_a_killed_flow_leaves_nothing_running_and_a_waiting_twin_runs_the_step_once(
    prefect_api: str, scratch_dir: Path
) -> None:
    gate, ledger = scratch_dir / "gate", scratch_dir / "ledger"
    first_temp, twin_temp = scratch_dir / "first-tmp", scratch_dir / "twin-tmp"
    first = _start(scratch_dir / "first", gate, ledger, prefect_api, first_temp)
    _wait_for(ledger, first, "step three's start")
    started_by_first = descendants(first.pid)  # the guardian, the step's shell, its sleep
    assert list(first_temp.glob("aiorch-resume-three-*")), "no sandbox of step three"
    # The twin gets steps one and two from the cache, then waits for step three's lock.
    twin = _start(scratch_dir / "twin", gate, ledger, prefect_api, twin_temp)
    _wait_for(scratch_dir / "twin" / "resume-two" / "out" / "value", twin, "the twin's step two")

    os.kill(first.pid, signal.SIGKILL)  # the flow process alone: its helpers must follow
    first.wait(timeout=30)
    took = wait_until_gone(started_by_first, LEFTOVER_DEADLINE_SECONDS)
    print(f"helpers of the killed flow gone {took:.2f} s after it")
    assert not list(first_temp.iterdir())  # its step sandbox was swept

    gate.touch()
    log, _ = twin.communicate(timeout=DEADLINE_SECONDS)
    assert twin.returncode == 0, log
    # Step three started twice (killed, then the twin's) and ran to its end once: the
    # twin took the lock over only once the first one's shell was dead.
    assert ledger.read_text().split() == ["start", "start", "end"]
    assert "ERROR" not in log, log


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

    # A dead holder whose guardian still runs may still have a command running.
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as guardian:
        path.write_text(json.dumps({**holder, "pid": dead.pid, "guardian": guardian.pid}))
        assert not manager.acquire_lock("step-key", "other", acquire_timeout=0.3)
        guardian.kill()
    assert manager.acquire_lock("step-key", "other", acquire_timeout=5)
