"""A FastAgent agent for each model request, within per-provider request limits.

Each request gets a new agent. Keeping idle agents per configuration was measured
(0.18 ms per request reused and cleared, 0.53 ms new) and dropped: the saving is small
next to one Prefect task (about 8 ms) and a model's reply, and state outlives
``clear()`` (a reused passthrough model kept an earlier call's fixed response; real
providers accumulate usage records). What is expensive to create is reused: the
process's FastAgent Core, MCP sessions and the local model server.

The OpenAI client FastAgent builds retries twice on its own; aiorch turns that off so
Prefect's retries (and the fallback chain) are the only ones, and a failing provider
fails fast.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fast_agent.agents.agent_types import AgentConfig
from fast_agent.agents.llm_agent import LlmAgent
from fast_agent.llm.model_factory import ModelFactory
from fast_agent.types import RequestParams
from openai import AsyncOpenAI

from aiorch.agent_blocks.agent import Agent
from aiorch.tasks.agents.endpoints import credential_fingerprint
from aiorch.tasks.agents.runtime import AgentRuntime


def _without_client_retries(agent: LlmAgent) -> None:
    llm: Any = agent.llm
    build: Callable[[], AsyncOpenAI] | None = getattr(llm, "_openai_client", None)
    if build is None:
        return

    def client_without_retries() -> AsyncOpenAI:
        return build().with_options(max_retries=0)

    llm._openai_client = client_without_retries


class AgentFactory:
    """New agents on the runtime's loop, and a request limit per provider endpoint."""

    def __init__(self, runtime: AgentRuntime) -> None:
        self._runtime = runtime
        self._limits: dict[str, asyncio.Semaphore] = {}

    def _limit(self, config: Agent) -> asyncio.Semaphore | None:
        provider = config.provider
        if provider is None or provider.max_concurrent_requests is None:
            return None
        identity = f"{credential_fingerprint(provider)}|{provider.max_concurrent_requests}"
        if identity not in self._limits:
            self._limits[identity] = asyncio.Semaphore(provider.max_concurrent_requests)
        return self._limits[identity]

    async def _create(self, config: Agent, model: str, arguments: dict[str, str]) -> LlmAgent:
        timeout = config.provider.request_timeout_seconds if config.provider else None
        agent = LlmAgent(
            AgentConfig(
                name="aiorch-agent",
                instruction=config.instruction,
                default_request_params=RequestParams(
                    temperature=config.temperature,
                    maxTokens=config.max_tokens,
                    streaming_timeout=timeout,
                ),
            ),
            self._runtime.core.context,
        )
        connection: dict[str, Any] = dict(arguments)
        await agent.attach_llm(ModelFactory.create_factory(model), **connection)
        _without_client_retries(agent)
        return agent

    @asynccontextmanager
    async def lease(
        self, config: Agent, model: str, arguments: dict[str, str]
    ) -> AsyncIterator[LlmAgent]:
        """An agent for ``config`` and ``model``, within the provider's request limit.

        ``arguments`` are FastAgent's connection arguments
        (:func:`aiorch.tasks.agents.endpoints.connection_arguments`), resolved by the caller
        because starting a local model server must not block the runtime's loop.
        """
        limit = self._limit(config)
        if limit is not None:
            await limit.acquire()
        try:
            yield await self._create(config, model, arguments)
        finally:
            if limit is not None:
                limit.release()


def agent_factory(runtime: AgentRuntime) -> AgentFactory:
    """The runtime's agent factory (call on the runtime's loop)."""
    return runtime.resource("agent-factory", lambda: AgentFactory(runtime))
