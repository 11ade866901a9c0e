"""The guardian: what a killed process registered dies with it, even if the guardian
itself was killed and replaced in between."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.processes import running, wait_until_gone

OWNER = """
import os, signal, subprocess, sys, tempfile
from aiorch.core.guardian import Guardian

guardian = Guardian.of_process()
first = subprocess.Popen(["sleep", "120"], start_new_session=True)
guardian.watch(first.pid)
os.kill(guardian.pid, signal.SIGKILL)  # the guardian dies on its own
os.waitpid(guardian.pid, 0)
second = subprocess.Popen(["sleep", "120"], start_new_session=True)
guardian.watch(second.pid)  # a new guardian takes over, knowing the first too
sandbox = tempfile.mkdtemp()
with guardian.sweeping(__import__("pathlib").Path(sandbox)):
    print(first.pid, second.pid, guardian.pid, sandbox, flush=True)
    sys.stdin.read()
"""


def test_a_replaced_guardian_still_kills_what_was_registered_before() -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert owner.stdout is not None
    first, second, guardian, sandbox = owner.stdout.readline().split()
    pids = {int(first), int(second), int(guardian)}
    assert running(pids) == pids
    assert Path(sandbox).is_dir()
    owner.send_signal(signal.SIGKILL)
    owner.wait(timeout=30)
    wait_until_gone(pids, deadline_seconds=10)
    assert not Path(sandbox).exists()


def test_a_forked_child_does_not_keep_its_parents_guardian_alive() -> None:
    script = """
import os, subprocess, sys, time
from aiorch.core.guardian import Guardian
guardian = Guardian.of_process()
sleeper = subprocess.Popen(["sleep", "120"], start_new_session=True)
guardian.watch(sleeper.pid)
child = os.fork()
if child == 0:
    time.sleep(120)  # holds no write end of the parent's guardian pipe
    os._exit(0)
print(sleeper.pid, guardian.pid, child, flush=True)
sys.stdin.read()
"""
    owner = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert owner.stdout is not None
    sleeper, guardian, child = map(int, owner.stdout.readline().split())
    try:
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=30)
        wait_until_gone({sleeper, guardian}, deadline_seconds=10)
    finally:
        os.kill(child, signal.SIGKILL)


def test_a_test_postgres_server_dies_with_its_killed_owner() -> None:
    from aiorch.testing.postgres import postgres_bin
    from tests.services import require_service

    require_service("PostgreSQL", postgres_bin() is not None, "initdb/postgres are not installed")
    script = """
import sys
from pathlib import Path
from aiorch.testing.postgres import running_postgres
with running_postgres() as url:
    port = url.rsplit(":", 1)[1].split("/")[0]
    for pid_file in Path("/tmp").glob("aiorch-postgres-*/data/postmaster.pid"):
        lines = pid_file.read_text().splitlines()
        if lines[3] == port:  # postmaster.pid: pid, data dir, start time, port, ...
            print(lines[0], flush=True)
    sys.stdin.read()
"""
    owner = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert owner.stdout is not None
    postmaster = int(owner.stdout.readline())
    assert running({postmaster}) == {postmaster}
    owner.send_signal(signal.SIGKILL)
    owner.wait(timeout=30)
    wait_until_gone({postmaster}, deadline_seconds=15)
