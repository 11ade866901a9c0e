"""Work pools: time from flow-run creation to Completed, process pool vs Docker pool.

The same deployed flow (``breaker-states``: one small task) runs on a real process
worker and on a real Docker worker (the flow image built from the repository's
Dockerfile), alternately; each sample is the server's creation time to end time of a run.
Both workers poll every second (the default is 10 s, which adds up to 10 s to either).
Builds its images locally: the base with debootstrap (root) unless
AIORCH_BENCH_BASE_IMAGE names one.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from uuid import uuid4

import docker
from prefect.client.orchestration import get_client
from prefect.settings import get_current_settings

from aiorch.deploy.environments import apply_environment, load_environment
from aiorch.deploy.images import build_flow_image, build_python_base_image
from aiorch.testing.workers import Worker, creation_to_completion, pause_schedules
from bench.harness import Comparison, NotRun, Row, Side, interleave

NAME = "Work pools: run creation to Completed (breaker-states)"
IMAGE = "aiorch-bench/flows:latest"
BASE_IMAGE = "aiorch-bench/python-base:trixie"
# The checkout: its prefect.yaml, Dockerfile and deployments/ are what gets deployed.
ROOT = Path(__file__).resolve().parents[1]


def _why_not(client: docker.DockerClient | None) -> str | None:
    if client is None:
        return "no Docker engine"
    if os.environ.get("AIORCH_BENCH_BASE_IMAGE"):
        return None
    if shutil.which("debootstrap") is None or os.geteuid() != 0:
        return "no base image: needs root and debootstrap, or AIORCH_BENCH_BASE_IMAGE"
    return None


def _docker() -> docker.DockerClient | None:
    try:
        client = docker.from_env(timeout=600)
        client.ping()
        return client
    except docker.errors.DockerException:
        return None


def run(repeat: int) -> list[Row]:
    """Deploy breaker-states on both pools and time runs on each, interleaved."""
    client = _docker()
    problem = _why_not(client)
    if problem or client is None:
        return [NotRun(benchmark=NAME, reason=problem or "no Docker engine")]
    api_url = str(get_current_settings().api.url)
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aiorch-pools-")))
        base = os.environ.get("AIORCH_BENCH_BASE_IMAGE")
        if base is None:
            base = BASE_IMAGE
            base_id = build_python_base_image(client, base)
            stack.callback(client.images.remove, base_id, force=True)
        image_id = build_flow_image(client, ROOT, base, IMAGE, log=lambda _: None)
        stack.callback(client.images.remove, image_id, force=True)
        volume = f"aiorch-bench-data-{uuid4().hex[:8]}"
        stack.callback(lambda: client.volumes.get(volume).remove(force=True))
        environment = load_environment("dev", ROOT / "deployments/environments")
        docker_pool = environment.work_pools["aiorch-docker"]
        job_variables = {
            **docker_pool.job_variables,
            "image": IMAGE,
            "volumes": [f"{volume}:/var/lib/aiorch"],
        }
        pools = {
            **environment.work_pools,
            "aiorch-docker": docker_pool.model_copy(update={"job_variables": job_variables}),
        }
        asyncio.run(apply_environment(environment.model_copy(update={"work_pools": pools})))
        env = {
            **os.environ,
            "PREFECT_API_URL": api_url,
            "PWD": str(ROOT),
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }
        names = ["--name", "breaker-states", "--name", "breaker-states-docker"]
        subprocess.run(
            ["prefect", "--no-prompt", "deploy", *names],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            timeout=300,
        )
        with get_client(sync_client=True) as prefect:
            pause_schedules(prefect)
        workers = [
            Worker("aiorch-process", "process", env, scratch / "process.log", ROOT),
            Worker("aiorch-docker", "docker", env, scratch / "docker.log", ROOT),
        ]
        for worker in workers:
            stack.callback(worker.stop)
        process, in_docker = interleave(
            lambda: creation_to_completion(
                workers[0].complete("aiorch-breaker-states/breaker-states")
            ),
            lambda: creation_to_completion(
                workers[1].complete("aiorch-breaker-states/breaker-states-docker")
            ),
            max(3, repeat // 2),
        )
    return [
        Comparison(
            benchmark=NAME,
            baseline=Side(label="process pool", samples=process),
            candidate=Side(label="docker pool (flow image)", samples=in_docker),
            note="workers polling every 1 s; the docker pool starts a container and a fresh "
            "interpreter per run",
        )
    ]
