"""A flow process killed mid-step leaves no container of its steps behind (docker runner).

The local runner's case (processes, sandboxes, a waiting twin) is in test_resume.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from uuid import uuid4

import docker

from aiorch.tasks.container.runners.docker import STEP_LABEL
from tests.processes import descendants, wait_until_gone

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import sys
from prefect import flow
from aiorch.tasks.container import ContainerStep, run_step

@flow(name="killed-docker-step")
def waits(name: str, image: str) -> None:
    run_step(ContainerStep(name=name, image=image, commands=[["sleep", "120"]]), "docker",
             cache=False)

waits(sys.argv[1], sys.argv[2])
"""
LEFTOVER_DEADLINE_SECONDS = 15.0


def _containers(client: docker.DockerClient, step: str) -> list[str]:
    labelled = client.containers.list(all=True, filters={"label": f"{STEP_LABEL}={step}"})
    return [container.id for container in labelled if container.id]


def test_a_killed_flow_leaves_no_container(
    prefect_api: str, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    step = f"killed-{uuid4().hex[:8]}"
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, step, busybox_image],
        cwd=ROOT,
        env={**os.environ, "PREFECT_API_URL": prefect_api},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not _containers(docker_client, step):
        assert process.poll() is None, "the flow ended before its step started"
        assert time.monotonic() < deadline, "the step's container never appeared"
        time.sleep(0.2)
    helpers = descendants(process.pid)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    killed = time.monotonic()
    while left := _containers(docker_client, step):
        assert time.monotonic() - killed < LEFTOVER_DEADLINE_SECONDS, f"left running: {left}"
        time.sleep(0.2)
    wait_until_gone(helpers, deadline_seconds=LEFTOVER_DEADLINE_SECONDS)


DAGGER_SCRIPT = """
import sys
from prefect import flow
from aiorch.tasks.container import ContainerStep, run_step

@flow(name="killed-dagger-step")
def waits(pid_file: str) -> None:
    run_step(ContainerStep(name="killed-dagger", image="busybox", commands=[["sh", "-c",
        f"echo $$ > {pid_file}; exec sleep 120"]]), "dagger", cache=False)

waits(sys.argv[1])
"""


def test_a_killed_flow_ends_its_dagger_session_and_the_exec_stops(
    prefect_api: str, dagger_double: Path, scratch_dir: Path
) -> None:
    pid_file = scratch_dir / "exec-pid"  # the double runs execs as host processes
    temp = scratch_dir / "tmp"
    temp.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-c", DAGGER_SCRIPT, str(pid_file)],
        cwd=ROOT,
        env={**os.environ, "PREFECT_API_URL": prefect_api, "TMPDIR": str(temp)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert process.poll() is None, "the flow ended before its step started"
        assert time.monotonic() < deadline, "the step's exec never started"
        time.sleep(0.2)
    helpers = descendants(process.pid) | {int(pid_file.read_text())}
    assert list(temp.glob("aiorch-killed-dagger-*")), "no staging directory of the step"
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    wait_until_gone(helpers, deadline_seconds=LEFTOVER_DEADLINE_SECONDS)
    assert not list(temp.glob("aiorch-*"))  # the step's staging directory was swept
