"""The evaluation framework's own cost, and parallel answers on the local model.

- Per sample on passthrough: a flow that calls ``arun_agent`` for each of ``SAMPLES``
  samples in a loop (the bare way to evaluate) against ``aevaluate`` on the same samples
  (answers as stored task runs, scoring, metrics), one at a time on both sides. Every
  sample is answered afresh on both (a new evaluation name per round). Target: at most
  10 % or 5 ms per sample more, whichever is larger.
- On the bundled local model: ``aevaluate`` with 4 answers at once against one at a
  time (samples per second; the model server decides how much parallelism pays).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from uuid import uuid4

import anyio
from prefect import flow

from aiorch.agent_blocks import Agent, ModelProvider
from aiorch.tasks.agents.local_model import local_model_installed
from aiorch.tasks.agents.task import arun_agent
from aiorch.tasks.evaluation.datasets import Dataset, load_dataset
from aiorch.tasks.evaluation.run import aevaluate
from bench.harness import Comparison, NotRun, Row, Side, interleave

SAMPLES = 20
LOCAL_SAMPLES = 8
TOLERANCE = 0.10
ALLOWED_SECONDS = 0.005


def _dataset(folder: Path, count: int) -> Dataset:
    path = folder / f"bench-{count}.jsonl"
    path.write_text(
        "\n".join(
            f'{{"id": "s{index}", "input": "What is {index} plus {index}?", '
            f'"target": "{2 * index}", "checks": [{{"type": "numeric"}}]}}'
            for index in range(count)
        )
    )
    return load_dataset(path)


@flow(name="aiorch-bench-agent-loop")
async def _loop(dataset: Dataset, agent: Agent) -> int:
    answered = 0
    for sample in dataset.samples:
        await arun_agent(agent, sample.prompt())
        answered += 1
    return answered


@flow(name="aiorch-bench-evaluation")
async def _evaluation(dataset: Dataset, agent: Agent, concurrency: int) -> int:
    evaluation = await aevaluate(
        dataset, [agent], name=f"bench-{uuid4().hex}", max_concurrency=concurrency
    )
    return len(evaluation.results)


def _per_sample(run: Callable[[], object], count: int) -> Callable[[], float]:
    def sample() -> float:
        started = time.perf_counter()
        run()
        return (time.perf_counter() - started) / count

    return sample


def framework_cost(folder: Path, repeat: int) -> Comparison:
    """``aevaluate`` against a bare ``arun_agent`` loop, per sample, on passthrough."""
    dataset = _dataset(folder, SAMPLES)
    echo = Agent(instruction="Repeat the user.", model="passthrough")
    bare, framework = interleave(
        _per_sample(lambda: anyio.run(_loop, dataset, echo), SAMPLES),
        _per_sample(lambda: anyio.run(_evaluation, dataset, echo, 1), SAMPLES),
        repeat,
    )
    row = Comparison(
        benchmark="Evaluation per sample, passthrough",
        baseline=Side(label="arun_agent loop in a flow", samples=bare),
        candidate=Side(label="aevaluate, one at a time", samples=framework),
        unit="s",
        target="extra <= max(10 %, 5 ms) per sample",
        note=f"{SAMPLES} samples per run, each answered afresh",
    )
    allowed = max(TOLERANCE * row.baseline.median, ALLOWED_SECONDS)
    return row.model_copy(update={"met": row.extra <= allowed})


def parallel_answers(folder: Path, repeat: int) -> Comparison:
    """Samples per second on the local model, four answers at once against one."""
    dataset = _dataset(folder, LOCAL_SAMPLES)
    local = Agent(
        instruction="Answer with the number only.",
        model="generic.smollm2",
        provider=ModelProvider(kind="local"),
        temperature=0,
        max_tokens=8,
    )

    def rate(concurrency: int) -> Callable[[], float]:
        def sample() -> float:
            started = time.perf_counter()
            anyio.run(_evaluation, dataset, local, concurrency)
            return LOCAL_SAMPLES / (time.perf_counter() - started)

        return sample

    sequential, parallel = interleave(rate(1), rate(4), repeat)
    return Comparison(
        benchmark="Evaluation on the local model, 4 answers at once",
        baseline=Side(label="one at a time", samples=sequential),
        candidate=Side(label="max_concurrency=4", samples=parallel),
        unit="per s",
        note=f"samples per second over {LOCAL_SAMPLES} samples (2 cores, one model server)",
    )


def run(repeat: int) -> list[Row]:
    """The framework's cost per sample, and parallel answers on the local model."""
    with tempfile.TemporaryDirectory() as folder:
        rows: list[Row] = [framework_cost(Path(folder), repeat)]
        if local_model_installed():
            rows.append(parallel_answers(Path(folder), max(3, repeat // 3)))
        else:
            rows.append(
                NotRun(
                    benchmark="Evaluation on the local model",
                    reason="the model extra is not installed",
                )
            )
    return rows
