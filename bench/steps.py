"""Container steps: overhead over a plain Prefect task, cache hits, fan-out.

1. Step overhead: ``run_step`` on the local runner vs a plain Prefect task running the
   same subprocess; on Docker vs a plain Prefect task running the same container with the
   docker SDK. Target: at most 10 % or 15 ms extra per step, whichever is larger.
2. Cache hit: a cached 1-second step vs its first run. Target: a hit in at most 50 ms.
3. Fan-out: 8 one-second steps mapped vs run one by one. Target: at least 80 % of the
   ideal speed-up (8x: sleeping steps need no CPU, and the flow's task runner and
   AIORCH_MAX_PARALLEL_STEPS are raised to 16 so neither is the bound); the curve for
   1-16 steps is reported beside it.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from functools import partial
from typing import Any, cast
from uuid import uuid4

import docker
from prefect import flow, task
from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from aiorch.deploy.images import BUSYBOX_IMAGE, build_busybox_image, busybox_binary
from aiorch.tasks.container import ContainerStep, RunnerKind, run_step
from bench.harness import Comparison, NotRun, Row, Section, Side, interleave, timed
from bench.task_cost import prefect_task_cost

FAN_OUT = 8
CURVE = (1, 2, 4, 8, 12, 16)
COMMAND = ["sh", "-c", "echo ok"]


@task(name="plain-subprocess")
def plain_subprocess(command: list[str]) -> str:
    """The baseline: a plain Prefect task running a subprocess."""
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


@task(name="plain-docker-run")
def plain_docker_run(image: str, command: list[str]) -> bytes:
    """The baseline: a plain Prefect task running a container with the docker SDK."""
    client = docker.from_env()
    try:
        output: bytes = client.containers.run(image, command, remove=True)
        return output
    finally:
        client.close()


def _step(name: str, command: list[str]) -> ContainerStep:
    return ContainerStep(name=name, image=BUSYBOX_IMAGE, commands=[command])


def _overhead(name: str, baseline: Side, candidate: Side, task_cost: float) -> Comparison:
    row = Comparison(benchmark=name, baseline=baseline, candidate=candidate)
    allowed = max(0.10 * baseline.median, 0.015)
    return row.model_copy(
        update={
            "target": "extra <= max(10 %, 15 ms)",
            "met": row.extra <= allowed,
            "note": f"extra {row.extra * 1000:.1f} ms per step (allowed {allowed * 1000:.1f} "
            f"ms); run_step is two Prefect tasks (the step, and its execution carrying the "
            f"cache policy), one more than the baseline, and one task costs "
            f"{task_cost * 1000:.1f} ms here",
        }
    )


@flow(name="bench-step-overhead")
def step_overhead(repeat: int, with_docker: bool) -> list[Comparison]:
    """Local and Docker step overhead, each interleaved with its plain-task baseline."""
    step = _step(f"bench-{uuid4().hex[:8]}", COMMAND)
    task_cost = prefect_task_cost(repeat)
    local = interleave(
        timed(lambda: plain_subprocess(COMMAND)),
        timed(lambda: run_step(step, RunnerKind.LOCAL, cache=False)),
        repeat,
    )
    rows = [
        _overhead(
            "Step overhead, local runner",
            Side(label="plain task + subprocess", samples=local[0]),
            Side(label="run_step (local)", samples=local[1]),
            task_cost,
        )
    ]
    if with_docker:
        in_docker = interleave(
            timed(lambda: plain_docker_run(BUSYBOX_IMAGE, COMMAND)),
            timed(lambda: run_step(step, RunnerKind.DOCKER, cache=False)),
            repeat,
        )
        rows.append(
            _overhead(
                "Step overhead, docker runner",
                Side(label="plain task + docker SDK run", samples=in_docker[0]),
                Side(label="run_step (docker)", samples=in_docker[1]),
                task_cost,
            )
        )
    return rows


@flow(name="bench-cache-hit")
def cache_hit(repeat: int) -> Comparison:
    """First runs of a 1-second step and the cache hit of the same step right after."""
    firsts: list[float] = []
    hits: list[float] = []
    for _ in range(repeat):
        step = _step(f"sleep-{uuid4().hex[:8]}", ["sleep", "1"])
        firsts.append(timed(partial(run_step, step, RunnerKind.LOCAL))())
        started = time.perf_counter()
        assert run_step(step, RunnerKind.LOCAL).cache_hit, "the second run did not hit"
        hits.append(time.perf_counter() - started)
    row = Comparison(
        benchmark="Cache hit of a 1 s step (local)",
        baseline=Side(label="first run", samples=firsts),
        candidate=Side(label="cache hit", samples=hits),
        target="hit <= 50 ms",
    )
    return row.model_copy(update={"met": row.candidate.median <= 0.050})


@flow(
    name="bench-fan-out",
    task_runner=cast(TaskRunner[PrefectFuture[Any]], ThreadPoolTaskRunner(max_workers=max(CURVE))),
)
def fan_out(repeat: int) -> tuple[Comparison, Section]:
    """8 sleeping steps mapped vs sequential; the mapped curve for 1-16 steps."""
    sleepers = [_step(f"sleep-{index}", ["sleep", "1"]) for index in range(max(CURVE))]

    def sequential(count: int) -> None:
        for step in sleepers[:count]:
            run_step(step, RunnerKind.LOCAL, cache=False)

    def mapped(count: int) -> None:
        run_step.map(sleepers[:count], RunnerKind.LOCAL, cache=False).result()

    one_by_one, together = interleave(
        timed(partial(sequential, FAN_OUT)), timed(partial(mapped, FAN_OUT)), repeat
    )
    row = Comparison(
        benchmark=f"Fan-out of {FAN_OUT} one-second steps (local)",
        baseline=Side(label="one by one", samples=one_by_one),
        candidate=Side(label="run_step.map", samples=together),
        target=f"speed-up >= 80 % of {FAN_OUT}x",
    )
    speed_up = row.baseline.median / row.candidate.median
    row = row.model_copy(
        update={
            "met": speed_up >= 0.8 * FAN_OUT,
            "note": f"speed-up {speed_up:.2f}x of an ideal {FAN_OUT}x",
        }
    )
    baseline = statistics.median(timed(partial(sequential, 1))() for _ in range(repeat))
    lines = [
        "| steps | mapped (median) | speed-up over one by one | of ideal |",
        "|---|---|---|---|",
    ]
    for count in CURVE:
        median = statistics.median(timed(partial(mapped, count))() for _ in range(repeat))
        speed = count * baseline / median
        lines.append(f"| {count} | {median:.2f} s | {speed:.2f}x | {speed / count:.0%} |")
    curve = Section(
        title="Fan-out curve (local runner, one-second steps)",
        markdown="One by one = steps x the median single step "
        f"({baseline:.2f} s).\n\n" + "\n".join(lines),
    )
    return row, curve


def _docker_ready() -> str | None:
    """None when the docker runner can be measured, else why not."""
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except docker.errors.DockerException as error:
        return f"no Docker engine ({error.__class__.__name__})"
    try:
        client.images.get(BUSYBOX_IMAGE)
    except docker.errors.ImageNotFound:
        busybox = busybox_binary()
        if busybox is None:
            return f"no {BUSYBOX_IMAGE} and no busybox binary to build it"
        build_busybox_image(client, busybox)
    return None


def run(repeat: int) -> list[Row]:
    """Every container-step benchmark."""
    os.environ["AIORCH_MAX_PARALLEL_STEPS"] = str(max(CURVE))
    rows: list[Row] = []
    docker_problem = _docker_ready()
    # A step costs milliseconds: three times the samples cost little and steady the medians.
    rows.extend(step_overhead(3 * repeat, with_docker=docker_problem is None))
    if docker_problem:
        rows.append(NotRun(benchmark="Step overhead, docker runner", reason=docker_problem))
    rows.append(cache_hit(repeat))
    rows.extend(fan_out(repeat))
    return rows
