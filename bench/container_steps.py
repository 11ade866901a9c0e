"""Container step costs, measured side by side in one run.

Prints, for each runner available here: one trivial step (cache off), the same step
served from cache, and 8 steps that each sleep 0.5 s run one after another and fanned
out with ``run_step.map``, with the ratios between them. Start a Docker engine first to
include the docker runner (and build its image with ``aiorch image busybox``).

    .venv/bin/python -m bench.container_steps [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from uuid import uuid4

from prefect import flow

from tasks.container import ContainerStep, RunnerKind, StepResult, run_step
from tasks.container.images import BUSYBOX_IMAGE
from tasks.container.select import runner_statuses

FAN_OUT = 8
SLEEP = "0.5"


def _seconds(action: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _step(name: str, command: list[str]) -> ContainerStep:
    return ContainerStep(name=name, image=BUSYBOX_IMAGE, commands=[command])


@flow(name="bench-container-steps")
def measure(runner: RunnerKind, repeat: int) -> dict[str, float]:
    """Median seconds of each scenario on ``runner``."""
    trivial = _step(f"bench-{uuid4().hex[:8]}", ["echo", "ok"])
    sleepers = [_step(f"sleep-{index}", ["sleep", SLEEP]) for index in range(FAN_OUT)]

    def one() -> StepResult:
        return run_step(trivial, runner, cache=False)

    run_step(trivial, runner)  # store it once, so the next calls hit the cache

    def hit() -> StepResult:
        result = run_step(trivial, runner)
        assert result.cache_hit
        return result

    def sequential() -> None:
        for step in sleepers:
            run_step(step, runner, cache=False)

    def fanned_out() -> None:
        run_step.map(sleepers, runner, cache=False).result()

    return {
        "one step": _seconds(one, repeat),
        "cache hit": _seconds(hit, repeat),
        f"{FAN_OUT} x sleep {SLEEP} s, sequential": _seconds(sequential, repeat),
        f"{FAN_OUT} x sleep {SLEEP} s, map": _seconds(fanned_out, repeat),
    }


def main() -> None:
    """Measure every available runner and print a table with ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    repeat = parser.parse_args().repeat
    usable = [status.kind for status in runner_statuses() if status.available]
    skipped = [f"{s.kind}: {s.detail}" for s in runner_statuses() if not s.available]
    rows = {runner: measure(runner, repeat) for runner in usable}
    print(f"median of {repeat}; {FAN_OUT}-step fan-out bounded by AIORCH_MAX_PARALLEL_STEPS")
    for runner, timings in rows.items():
        print(f"\n{runner}")
        for scenario, seconds in timings.items():
            print(f"  {scenario:<32} {seconds:7.3f} s")
        one, hit = timings["one step"], timings["cache hit"]
        sequential = timings[f"{FAN_OUT} x sleep {SLEEP} s, sequential"]
        mapped = timings[f"{FAN_OUT} x sleep {SLEEP} s, map"]
        print(
            f"  cache hit / one step: {hit / one:.2f}; map speed-up over sequential: "
            f"{sequential / mapped:.2f}x"
        )
    for line in skipped:
        print(f"\nnot measured: {line}")


if __name__ == "__main__":
    main()
