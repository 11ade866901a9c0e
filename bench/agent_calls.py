"""Agent call costs, measured side by side in one run (interleaved, medians).

Compares, for FastAgent's passthrough model: a raw FastAgent call on the agent runtime,
the same call inside a plain Prefect task, and aiorch's ``run_agent`` task (an
``agent-call`` task with one ``model-request`` task). With the ``model`` extra it also
compares a local-model call through ``run_agent`` with a direct HTTP request to the
same llama.cpp server.

    .venv/bin/python -m bench.agent_calls [--repeat 15]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import httpx
from fast_agent.agents.agent_types import AgentConfig
from fast_agent.agents.llm_agent import LlmAgent
from fast_agent.llm.model_factory import ModelFactory
from prefect import flow, task

from agent_blocks import Agent, ModelProvider
from agent_blocks.provider import LOCAL_MODEL, LOCAL_MODEL_NAME
from tasks.agents.local_model import LocalModelServer, local_model_installed
from tasks.agents.runtime import AgentRuntime
from tasks.agents.task import run_agent

QUESTION = "What is the capital of France?"


def _raw_fastagent(prompt: str) -> str:
    runtime = AgentRuntime.shared()

    async def on_runtime() -> str:
        agent = LlmAgent(AgentConfig(name="raw", instruction="x"), runtime.core.context)
        await agent.attach_llm(ModelFactory.create_factory("passthrough"))
        return (await agent.generate([prompt])).last_text() or ""

    return runtime.call(on_runtime)


@task(name="raw-fastagent-call")
def raw_in_task(prompt: str) -> str:
    """A raw FastAgent call inside a plain Prefect task."""
    return _raw_fastagent(prompt)


def _direct_http(base_url: str) -> str:
    response = httpx.post(
        f"{base_url}/chat/completions",
        json={
            "model": LOCAL_MODEL_NAME,
            "messages": [
                {"role": "system", "content": "Answer with one word."},
                {"role": "user", "content": QUESTION},
            ],
            "temperature": 0,
            "max_tokens": 16,
        },
        timeout=120,
    )
    response.raise_for_status()
    text: str = response.json()["choices"][0]["message"]["content"]
    return text


def _interleaved(cases: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, action in cases.items():
            started = time.perf_counter()
            action()
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in samples.items()}


@flow(name="bench-agent-calls")
def measure(repeat: int) -> dict[str, float]:
    """Median seconds of each case, measured interleaved."""
    passthrough = Agent(instruction="x", model="passthrough")
    counter = iter(range(10**9))

    def fresh() -> str:
        # A new prompt each time: run_agent would otherwise replay the first request.
        return f"hello {next(counter)}"

    cases: dict[str, Callable[[], object]] = {
        "passthrough: raw FastAgent": lambda: _raw_fastagent(fresh()),
        "passthrough: raw FastAgent in a Prefect task": lambda: raw_in_task(fresh()),
        "passthrough: aiorch run_agent": lambda: run_agent(passthrough, fresh()),
    }
    if local_model_installed():
        base_url = LocalModelServer.shared().base_url()
        local = Agent(
            instruction="Answer with one word.",
            model=LOCAL_MODEL,
            provider=ModelProvider(kind="local"),
            temperature=0,
            max_tokens=16,
        )
        _direct_http(base_url)  # warm the model once

        def through_platform() -> object:
            return run_agent(local, f"{QUESTION} ({next(counter)})")

        cases["local model: direct HTTP"] = lambda: _direct_http(base_url)
        cases["local model: aiorch run_agent"] = through_platform
    return _interleaved(cases, repeat)


def main() -> None:
    """Measure and print a table with ratios to the first case of each group."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    medians = measure(parser.parse_args().repeat)
    baselines = {
        "passthrough": medians["passthrough: raw FastAgent"],
        "local model": medians.get("local model: direct HTTP", 0.0),
    }
    print("| case | median ms | ratio to the group's first case |")
    print("|---|---|---|")
    for name, seconds in medians.items():
        base = baselines[name.split(":")[0]]
        ratio = f"{seconds / base:.1f}x" if base else "-"
        print(f"| {name} | {seconds * 1000:.1f} | {ratio} |")
    if not local_model_installed():
        print("\nlocal model not installed: install the 'model' extra to measure it")


if __name__ == "__main__":
    main()
