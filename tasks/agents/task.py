"""Prefect tasks that run an agent on a prompt: ``run_agent`` (sync) and ``arun_agent``.

The agent comes from an ``aiorch-agent`` block (loaded by name when the task runs, so
edits to the block apply to the next run) or is passed in. The call runs on the
process's FastAgent runtime; a reply that carries a provider failure becomes an
:class:`AgentCallError` whose ``retryable`` flag says whether Prefect's retries may help.
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

from fast_agent.agents.agent_types import AgentConfig
from fast_agent.agents.llm_agent import LlmAgent
from fast_agent.llm.model_factory import ModelFactory
from fast_agent.mcp.prompt_serialization import to_json
from fast_agent.types import PromptMessageExtended, RequestParams
from prefect import get_run_logger, task
from prefect.utilities.asyncutils import run_coro_as_sync
from pydantic import BaseModel, Field

from agent_blocks.agent import Agent, check_model
from tasks.agents.errors import AgentCallError, error_from_reply
from tasks.agents.runtime import AgentRuntime

USAGE_CHANNEL = "fast-agent-usage"


class TokenUsage(BaseModel):
    """Tokens one call used, as the provider reported them."""

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


class AgentResult(BaseModel):
    """What one agent call produced."""

    text: str
    model: str = Field(description="The model that answered.")
    failed_models: list[str] = Field(
        default_factory=list,
        description="Models tried first that failed with a retryable error (fallbacks used).",
    )
    stop_reason: str
    usage: TokenUsage
    latency_seconds: float
    history_json: str = Field(description="The conversation, in FastAgent's JSON format.")


def _usage(reply: PromptMessageExtended) -> TokenUsage:
    for block in (reply.channels or {}).get(USAGE_CHANNEL, []):
        try:
            data: dict[str, Any] = json.loads(getattr(block, "text", "") or "{}")
        except json.JSONDecodeError:
            continue
        turn = data.get("turn", data)
        return TokenUsage(
            input_tokens=int(turn.get("input_tokens", 0) or 0),
            output_tokens=int(turn.get("output_tokens", 0) or 0),
        )
    return TokenUsage()


async def _load(agent: Agent | str) -> Agent:
    if isinstance(agent, Agent):
        return agent
    return cast(Agent, await Agent.aload(agent))


async def _call(agent: Agent | str, prompt: str, model: str | None) -> AgentResult:
    """Try the model (or the override), then each fallback while failures are retryable."""
    if not prompt:
        raise ValueError("prompt is empty; pass the text the agent should answer")
    config = await _load(agent)
    primary = check_model(model, "model override") if model else config.model
    chain = [primary, *[fallback for fallback in config.fallback_models if fallback != primary]]
    logger = get_run_logger()
    failed: list[str] = []
    for index, candidate in enumerate(chain):
        try:
            result = await _attempt(config, candidate, prompt)
        except AgentCallError as error:
            if not error.retryable or index == len(chain) - 1:
                raise
            logger.warning("%s; falling back to %r", error, chain[index + 1])
            failed.append(candidate)
            continue
        return result.model_copy(update={"failed_models": failed})
    raise AssertionError("the model chain is never empty")


async def _attempt(config: Agent, chosen: str, prompt: str) -> AgentResult:
    provider = config.provider
    secrets = [provider.api_key.get_secret_value()] if provider and provider.api_key else []
    endpoint: dict[str, Any] = {}
    if provider is not None and provider.base_url is not None:
        endpoint["base_url"] = str(provider.base_url)
    if secrets:
        endpoint["api_key"] = secrets[0]
    runtime = AgentRuntime.shared()

    async def on_runtime() -> tuple[PromptMessageExtended, str, float]:
        llm_agent = LlmAgent(
            AgentConfig(
                name="aiorch-agent",
                instruction=config.instruction,
                default_request_params=RequestParams(
                    temperature=config.temperature, maxTokens=config.max_tokens
                ),
            ),
            runtime.core.context,
        )
        await llm_agent.attach_llm(ModelFactory.create_factory(chosen), **endpoint)
        started = time.perf_counter()
        reply = await llm_agent.generate(prompt)
        return reply, to_json(llm_agent.message_history), time.perf_counter() - started

    reply, history, latency = await runtime.acall(on_runtime)
    failure = error_from_reply(reply, chosen, secrets)
    if failure is not None:
        raise failure
    get_run_logger().info("agent call on %s took %.2f s", chosen, latency)
    return AgentResult(
        text=reply.last_text() or "",
        model=chosen,
        stop_reason=str(reply.stop_reason.value if reply.stop_reason else "unknown"),
        usage=_usage(reply),
        latency_seconds=latency,
        history_json=history,
    )


@task(name="agent-call")
def run_agent(agent: Agent | str, prompt: str, *, model: str | None = None) -> AgentResult:
    """Run an agent on a prompt as a Prefect task.

    Args:
        agent: An ``Agent`` block, or the name of a saved one (loaded when the task runs).
        prompt: What to ask.
        model: Use this model instead of the block's, for this call only.

    Raises:
        AgentCallError: the provider failed; ``retryable`` tells Prefect's
            ``retry_condition_fn`` whether to try again.

    Example:
        ```python
        from prefect import flow

        from agent_blocks import Agent
        from tasks.agents.task import run_agent

        @flow
        def echo() -> str:
            agent = Agent(instruction="Repeat the user.", model="passthrough")
            return run_agent(agent, "hello").text
        ```
    """
    return run_coro_as_sync(_call(agent, prompt, model))


@task(name="agent-call")
async def arun_agent(agent: Agent | str, prompt: str, *, model: str | None = None) -> AgentResult:
    """The async form of :func:`run_agent`, for async flows."""
    return await _call(agent, prompt, model)
