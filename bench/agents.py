"""Agent calls: overhead over raw FastAgent and pydantic-ai's wrapper; local throughput.

4. Agent call overhead with FastAgent's passthrough model: ``run_agent`` vs a raw
   FastAgent call in a plain Prefect task (target: the extra is at most one Prefect task
   overhead per model request, the task overhead measured in the same run as a trivial
   task vs a plain call), and vs pydantic-ai's Prefect durability wrapper around its
   ``TestModel`` making the same one model request (target: not slower).
5. Local model throughput: completion tokens per second through ``run_agent`` vs direct
   HTTP to the same llama.cpp server, temperature 0, a new prompt per request. Target: at
   least 0.95. FastAgent always streams (server-sent events), which costs llama.cpp's
   server CPU per token; a second row compares with a direct request streamed the same
   way, which is what the platform itself adds.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from fast_agent.agents.agent_types import AgentConfig
from fast_agent.agents.llm_agent import LlmAgent
from fast_agent.llm.model_factory import ModelFactory
from prefect import flow, task

from aiorch.agent_blocks import Agent, ModelProvider
from aiorch.agent_blocks.provider import LOCAL_MODEL, LOCAL_MODEL_NAME
from aiorch.tasks.agents.local_model import (
    INSTALL_HINT,
    TEMPLATE_TOKENS_PER_MESSAGE,
    LocalModelServer,
    local_model_installed,
)
from aiorch.tasks.agents.runtime import AgentRuntime
from aiorch.tasks.agents.task import run_agent
from bench.harness import Comparison, NotRun, Row, Side, interleave, rotate, timed
from bench.task_cost import prefect_task_cost

STORY = "Tell a long story about a lighthouse keeper and a storm. Story number {n}."
STORYTELLER = "You are a storyteller."
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
    task_cost = prefect_task_cost(repeat)
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


class _DirectHttp:
    """Chat completions straight to the llama.cpp server, on one kept-alive connection."""

    def __init__(self, base_url: str) -> None:
        self._url = f"{base_url}/chat/completions"
        self._client = httpx.Client(timeout=300)

    def _body(self, prompt: str, stream: bool) -> dict[str, Any]:
        return {
            "model": LOCAL_MODEL_NAME,
            "messages": [
                {"role": "system", "content": STORYTELLER},
                {"role": "user", "content": prompt},
            ],
            "temperature": 0,
            "max_tokens": STORY_TOKENS,
            "stream": stream,
        }

    def complete(self, prompt: str) -> str:
        """One non-streaming request; the reply's text."""
        response = self._client.post(self._url, json=self._body(prompt, stream=False))
        response.raise_for_status()
        text: str = response.json()["choices"][0]["message"]["content"]
        return text

    def stream(self, prompt: str) -> str:
        """One streaming request (server-sent events, as FastAgent asks); the reply's text."""
        parts = []
        with self._client.stream("POST", self._url, json=self._body(prompt, stream=True)) as reply:
            reply.raise_for_status()
            for line in reply.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    delta = json.loads(line.removeprefix("data: "))["choices"][0]["delta"]
                    parts.append(delta.get("content") or "")
        return "".join(parts)

    def close(self) -> None:
        self._client.close()


def _tokens_per_second(
    server: LocalModelServer, prompts: Iterator[str], call: Callable[[str], str]
) -> Callable[[], float]:
    """A sampler: completion tokens per second of ``call``, counted by the server's tokenizer.

    Every side is counted the same way, after the clock stops: the platform's own usage
    adds chat-template tokens, and a streamed reply reports no usage.
    """

    def sample() -> float:
        started = time.perf_counter()
        text = call(next(prompts))
        seconds = time.perf_counter() - started
        return (server.count_tokens([text]) - TEMPLATE_TOKENS_PER_MESSAGE) / seconds

    return sample


@flow(name="bench-local-model-throughput")
def local_model_throughput(repeat: int) -> list[Comparison]:
    """Tokens per second: run_agent vs direct HTTP, non-streaming and streaming, rotated.

    Every request gets its own prompt, so none is served from llama.cpp's prompt cache.
    """
    server = LocalModelServer.shared()
    direct = _DirectHttp(server.base_url())
    agent = Agent(
        instruction=STORYTELLER,
        model=LOCAL_MODEL,
        provider=ModelProvider(kind="local"),
        temperature=0,
        max_tokens=STORY_TOKENS,
    )
    prompts = (STORY.format(n=n) for n in itertools.count())
    try:
        plain, streamed, platform = rotate(
            [
                _tokens_per_second(server, prompts, direct.complete),
                _tokens_per_second(server, prompts, direct.stream),
                _tokens_per_second(server, prompts, lambda prompt: run_agent(agent, prompt).text),
            ],
            repeat,
        )
    finally:
        direct.close()
    candidate = Side(label="run_agent", samples=platform)
    rows = []
    for name, label, samples in (
        ("Local model throughput", "direct HTTP to llama.cpp", plain),
        (
            "Local model throughput, streamed baseline",
            "direct HTTP, streamed as FastAgent asks",
            streamed,
        ),
    ):
        row = Comparison(
            benchmark=name,
            baseline=Side(label=label, samples=samples),
            candidate=candidate,
            unit="tokens/s",
            target="ratio >= 0.95",
        )
        rows.append(row.model_copy(update={"met": row.ratio >= 0.95}))
    return rows


def run(repeat: int) -> list[Row]:
    """Every agent benchmark."""
    rows = agent_overhead(repeat)
    if local_model_installed():
        rows.extend(local_model_throughput(max(5, repeat // 2)))
    else:
        rows.append(NotRun(benchmark="Local model throughput", reason=INSTALL_HINT))
    return rows
