"""Agent calls: overhead over raw FastAgent and pydantic-ai's wrapper; local throughput.

4. Agent call overhead with FastAgent's passthrough model: ``run_agent`` vs a raw
   FastAgent call in a plain Prefect task (target: the extra is at most one Prefect task
   overhead per model request, the task overhead measured in the same run as a trivial
   task vs a plain call), and vs pydantic-ai's Prefect durability wrapper around its
   ``TestModel`` making the same one model request (target: not slower).
5. Local model throughput: completion tokens per second through ``run_agent`` vs direct
   HTTP to the same llama.cpp server, same prompt, temperature 0. Target: at least 0.95.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import httpx
from fast_agent.agents.agent_types import AgentConfig
from fast_agent.agents.llm_agent import LlmAgent
from fast_agent.llm.model_factory import ModelFactory
from prefect import flow, task

from agent_blocks import Agent, ModelProvider
from agent_blocks.provider import LOCAL_MODEL, LOCAL_MODEL_NAME
from bench.harness import Comparison, NotRun, Row, Side, interleave, timed
from tasks.agents.local_model import INSTALL_HINT, LocalModelServer, local_model_installed
from tasks.agents.runtime import AgentRuntime
from tasks.agents.task import run_agent

STORY = "Tell a long story about a lighthouse keeper and a storm. Story number {n}."
STORY_TOKENS = 200


def _raw_fastagent(prompt: str) -> str:
    runtime = AgentRuntime.shared()

    async def on_runtime() -> str:
        agent = LlmAgent(AgentConfig(name="raw", instruction="x"), runtime.core.context)
        await agent.attach_llm(ModelFactory.create_factory("passthrough"))
        return (await agent.generate([prompt])).last_text() or ""

    return runtime.call(on_runtime)


@task(name="raw-fastagent-call")
def raw_in_task(prompt: str) -> str:
    """The baseline: a raw FastAgent call inside a plain Prefect task."""
    return _raw_fastagent(prompt)


@task(name="trivial")
def trivial() -> int:
    """A task that does nothing: its cost is Prefect's per-task overhead."""
    return 1


def _nothing() -> int:
    return 1


def _pydantic_ai_sampler() -> Any:
    """A sampler running pydantic-ai's Prefect durability, or None when not installed."""
    try:
        from pydantic_ai import Agent as PydanticAgent
        from pydantic_ai.durable_exec.prefect import PrefectDurability
        from pydantic_ai.models.test import TestModel
    except ImportError:
        return None
    durable = PydanticAgent(TestModel(), name="bench", capabilities=[PrefectDurability()])
    return lambda prompt: durable.run_sync(prompt).output


@flow(name="bench-agent-overhead")
def agent_overhead(repeat: int) -> list[Row]:
    """run_agent vs raw FastAgent in a task, vs pydantic-ai's wrapper; task overhead."""
    counter = itertools.count()
    passthrough = Agent(instruction="x", model="passthrough")

    def prompt() -> str:
        # A new prompt each time: the same one would be replayed from storage.
        return f"hello {next(counter)}"

    ours = timed(lambda: run_agent(passthrough, prompt()))
    raw = interleave(timed(lambda: raw_in_task(prompt())), ours, repeat)
    overhead = interleave(timed(_nothing), timed(trivial), repeat)
    task_cost = Side(label="trivial task", samples=overhead[1]).median
    task_cost -= Side(label="plain call", samples=overhead[0]).median
    row = Comparison(
        benchmark="Agent call, passthrough model",
        baseline=Side(label="raw FastAgent in a plain task", samples=raw[0]),
        candidate=Side(label="run_agent (1 model request)", samples=raw[1]),
        target="extra <= one task overhead per request",
    )
    rows: list[Row] = [
        row.model_copy(
            update={
                "met": row.extra <= task_cost,
                "note": f"extra {row.extra * 1000:.1f} ms; one Prefect task costs "
                f"{task_cost * 1000:.1f} ms here (trivial task vs plain call, same run)",
            }
        )
    ]
    pydantic_ai = _pydantic_ai_sampler()
    if pydantic_ai is None:
        rows.append(
            NotRun(
                benchmark="Agent call vs pydantic-ai's Prefect wrapper",
                reason="pydantic-ai is not installed (the `bench` extra: scripts/bench)",
            )
        )
        return rows
    theirs = interleave(timed(lambda: pydantic_ai(prompt())), ours, repeat)
    versus = Comparison(
        benchmark="Agent call vs pydantic-ai's Prefect wrapper",
        baseline=Side(label="pydantic-ai PrefectDurability + TestModel", samples=theirs[0]),
        candidate=Side(label="run_agent + passthrough", samples=theirs[1]),
        target="ratio <= 1",
    )
    rows.append(versus.model_copy(update={"met": versus.ratio <= 1.0}))
    return rows


def _direct_tokens_per_second(base_url: str, prompt: str) -> float:
    started = time.perf_counter()
    response = httpx.post(
        f"{base_url}/chat/completions",
        json={
            "model": LOCAL_MODEL_NAME,
            "messages": [
                {"role": "system", "content": "You are a storyteller."},
                {"role": "user", "content": prompt},
            ],
            "temperature": 0,
            "max_tokens": STORY_TOKENS,
        },
        timeout=300,
    )
    response.raise_for_status()
    tokens: int = response.json()["usage"]["completion_tokens"]
    return tokens / (time.perf_counter() - started)


@flow(name="bench-local-model-throughput")
def local_model_throughput(repeat: int) -> Comparison:
    """Tokens per second, run_agent vs direct HTTP, same prompts, interleaved."""
    base_url = LocalModelServer.shared().base_url()
    agent = Agent(
        instruction="You are a storyteller.",
        model=LOCAL_MODEL,
        provider=ModelProvider(kind="local"),
        temperature=0,
        max_tokens=STORY_TOKENS,
    )
    direct_prompts = (STORY.format(n=n) for n in itertools.count())
    platform_prompts = (STORY.format(n=n) for n in itertools.count())

    def through_platform() -> float:
        started = time.perf_counter()
        result = run_agent(agent, next(platform_prompts))
        return result.usage.output_tokens / (time.perf_counter() - started)

    direct, platform = interleave(
        lambda: _direct_tokens_per_second(base_url, next(direct_prompts)),
        through_platform,
        repeat,
    )
    row = Comparison(
        benchmark="Local model throughput",
        baseline=Side(label="direct HTTP to llama.cpp", samples=direct),
        candidate=Side(label="run_agent", samples=platform),
        unit="tokens/s",
        target="ratio >= 0.95",
    )
    return row.model_copy(update={"met": row.ratio >= 0.95})


def run(repeat: int) -> list[Row]:
    """Every agent benchmark."""
    rows = agent_overhead(repeat)
    if local_model_installed():
        rows.append(local_model_throughput(max(3, repeat // 3)))
    else:
        rows.append(NotRun(benchmark="Local model throughput", reason=INSTALL_HINT))
    return rows
