"""An evaluation on a real model server, for the kill-and-resume test.

    python -m tests.eval_flow DATASET NAME BASE_URL

answers every sample one at a time (``max_concurrency=1``) with SmolLM2 at BASE_URL, so
the test can kill the process after some answers are stored.
"""

from __future__ import annotations

import sys

import anyio
from prefect import flow

from aiorch.agent_blocks import Agent, ModelProvider
from aiorch.tasks.evaluation.datasets import load_dataset
from aiorch.tasks.evaluation.run import Evaluation, aevaluate


def geography(base_url: str) -> Agent:
    """The agent both runs use: the same configuration, so the same stored answers."""
    return Agent(
        instruction="Answer with the city name only.",
        model="generic.smollm2",
        provider=ModelProvider(kind="generic", base_url=base_url),
        temperature=0,
        max_tokens=16,
    )


@flow(name="aiorch-evaluation-resume-test")
async def one_at_a_time(dataset: str, name: str, base_url: str) -> Evaluation:
    """Evaluate ``dataset`` one answer at a time."""
    return await aevaluate(
        load_dataset(dataset), [geography(base_url)], name=name, max_concurrency=1
    )


if __name__ == "__main__":
    anyio.run(one_at_a_time, sys.argv[1], sys.argv[2], sys.argv[3])
