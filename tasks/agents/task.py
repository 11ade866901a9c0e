"""Prefect tasks that run an agent on a prompt: ``run_agent`` (sync) and ``arun_agent``.

The agent comes from an ``aiorch-agent`` block (loaded by name when the task runs, so
edits to the block apply to the next run) or is passed in. Each model request is its
own ``model-request`` task, stored under a key of prompt, model, settings and endpoint
fingerprint, scoped to the flow run: a retried flow replays completed requests instead
of asking the model again, and the replay still reports the tokens (as saved). The call
runs on the process's FastAgent runtime; a reply that carries a provider failure becomes
an :class:`AgentCallError` whose ``retryable`` flag says whether Prefect's retries may
help, and retryable failures move on to the agent's fallback models.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable
from typing import Any, Literal, cast

from fast_agent.agents.agent_types import AgentConfig
from fast_agent.agents.llm_agent import LlmAgent
from fast_agent.llm.model_factory import ModelFactory
from fast_agent.mcp.prompt_serialization import from_json, to_json
from fast_agent.types import PromptMessageExtended, RequestParams
from prefect import get_run_logger, task
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from prefect.utilities.asyncutils import run_coro_as_sync
from pydantic import BaseModel, Field

from agent_blocks.agent import Agent, check_model
from agent_blocks.provider import ModelProvider
from tasks.agents.errors import AgentCallError, error_from_reply
from tasks.agents.runtime import AgentRuntime
from tasks.caching import PrecomputedKey

USAGE_CHANNEL = "fast-agent-usage"
REQUEST_KEY_VERSION = "aiorch-model-request-v1"
CacheScope = Literal["flow-run", "tenant"]


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
    cache_hit: bool = Field(
        default=False, description="Replayed from a stored model request, not asked again."
    )
    tokens_saved: int = Field(
        default=0, description="On a cache hit, the tokens the stored request had used."
    )


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


def credential_fingerprint(provider: ModelProvider | None) -> str:
    """Which endpoint and credential a request used, without the credential itself."""
    if provider is None:
        return "none"
    key = provider.api_key.get_secret_value() if provider.api_key else ""
    identity = hashlib.sha256(f"aiorch-credential\0{key}".encode()).hexdigest()[:16]
    return f"{provider.kind.value}|{provider.base_url or 'default'}|{identity}"


def _without_timestamps(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_timestamps(v) for k, v in value.items() if k != "timestamp"}
    if isinstance(value, list):
        return [_without_timestamps(item) for item in value]
    return value


def _history_messages(history: str | None) -> list[PromptMessageExtended]:
    if not history:
        return []
    try:
        if not isinstance(json.loads(history).get("messages"), list):
            raise ValueError("no 'messages' list")
        return from_json(history)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(
            "history is not a conversation in FastAgent's JSON format; pass the "
            f"history_json of an earlier AgentResult ({type(error).__name__})"
        ) from None


def request_cache_key(
    config: Agent,
    model: str,
    prompt: str,
    scope: CacheScope,
    tenant: str | None,
    history: str | None = None,
) -> str | None:
    """The key a model request is stored under, or None when it must not be cached.

    It covers the prompt, the model, the instruction and request settings, and the
    endpoint fingerprint, and is scoped to the flow run (replayed only by that run's
    retries) unless a tenant scope is chosen.
    """
    if scope == "tenant":
        if not tenant:
            raise ValueError(
                "cache_scope='tenant' needs tenant=...: name whose results may be shared"
            )
        owner = f"tenant:{tenant}"
    else:
        run_id = flow_run.get_id()
        if run_id is None:
            return None
        owner = f"flow-run:{run_id}"
    payload = {
        "version": REQUEST_KEY_VERSION,
        "scope": owner,
        "model": model,
        "instruction": config.instruction,
        "temperature": config.temperature,
        "max_tokens": config.max_tokens,
        "prompt": prompt,
        # Timestamps differ between a run and its retry; the conversation does not.
        "history": _without_timestamps(json.loads(history)) if history else None,
        "endpoint": credential_fingerprint(config.provider),
    }
    encoded = json.dumps(payload, sort_keys=True).encode()
    return f"model-request-{hashlib.sha256(encoded).hexdigest()}"


@task(name="model-request", persist_result=True, cache_policy=PrecomputedKey())
async def model_request(
    config: Agent, model: str, prompt: str, cache_key: str | None, history: str | None = None
) -> AgentResult:
    """One model request, stored under ``cache_key`` so a retried flow replays it.

    Raises:
        AgentCallError: the provider failed (nothing is stored).
    """
    provider = config.provider
    secrets = [provider.api_key.get_secret_value()] if provider and provider.api_key else []
    endpoint: dict[str, Any] = {}
    if provider is not None and provider.base_url is not None:
        endpoint["base_url"] = str(provider.base_url)
    if secrets:
        endpoint["api_key"] = secrets[0]
    runtime = AgentRuntime.shared()
    conversation: list[str | PromptMessageExtended] = [*_history_messages(history), prompt]

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
        await llm_agent.attach_llm(ModelFactory.create_factory(model), **endpoint)
        started = time.perf_counter()
        reply = await llm_agent.generate(conversation)
        return reply, to_json(llm_agent.message_history), time.perf_counter() - started

    reply, history, latency = await runtime.acall(on_runtime)
    failure = error_from_reply(reply, model, secrets)
    if failure is not None:
        raise failure
    get_run_logger().info("model request to %s took %.2f s", model, latency)
    return AgentResult(
        text=reply.last_text() or "",
        model=model,
        stop_reason=str(reply.stop_reason.value if reply.stop_reason else "unknown"),
        usage=_usage(reply),
        latency_seconds=latency,
        history_json=history,
    )


async def _call(
    agent: Agent | str,
    prompt: str,
    model: str | None,
    cache_scope: CacheScope = "flow-run",
    tenant: str | None = None,
    history: str | None = None,
) -> AgentResult:
    """Try the model (or the override), then each fallback while failures are retryable."""
    if not prompt:
        raise ValueError("prompt is empty; pass the text the agent should answer")
    _history_messages(history)  # reject a malformed history before any model is called
    config = await _load(agent)
    primary = check_model(model, "model override") if model else config.model
    chain = [primary, *[fallback for fallback in config.fallback_models if fallback != primary]]
    logger = get_run_logger()
    failed: list[str] = []
    for index, candidate in enumerate(chain):
        key = request_cache_key(config, candidate, prompt, cache_scope, tenant, history)
        request = model_request.with_options(task_run_name=f"model-request-{candidate}")
        state = await cast(
            Awaitable[State[AgentResult]],
            request(config, candidate, prompt, key, history, return_state=True),
        )
        try:
            result: AgentResult = await state.aresult()
        except AgentCallError as error:
            if not error.retryable or index == len(chain) - 1:
                raise
            logger.warning("%s; falling back to %r", error, chain[index + 1])
            failed.append(candidate)
            continue
        hit = state.name == "Cached"
        if hit:
            logger.info("model request to %s replayed from cache", candidate)
        return result.model_copy(
            update={
                "failed_models": failed,
                "cache_hit": hit,
                "tokens_saved": result.usage.total_tokens if hit else 0,
            }
        )
    raise AssertionError("the model chain is never empty")


@task(name="agent-call")
def run_agent(
    agent: Agent | str,
    prompt: str,
    *,
    model: str | None = None,
    cache_scope: CacheScope = "flow-run",
    tenant: str | None = None,
    history: str | None = None,
) -> AgentResult:
    """Run an agent on a prompt as a Prefect task.

    Args:
        agent: An ``Agent`` block, or the name of a saved one (loaded when the task runs).
        prompt: What to ask.
        model: Use this model instead of the block's, for this call only.
        cache_scope: ``flow-run`` (default): a completed request is replayed only by a
            retry of the same flow run. ``tenant``: shared by every run that passes the
            same ``tenant``.
        tenant: Who may share replayed requests; required with ``cache_scope="tenant"``.
        history: The ``history_json`` of an earlier result, to continue that conversation
            (in this task, another task or a later flow run); the result's
            ``history_json`` holds it with this turn added.

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
    return run_coro_as_sync(_call(agent, prompt, model, cache_scope, tenant, history))


@task(name="agent-call")
async def arun_agent(
    agent: Agent | str,
    prompt: str,
    *,
    model: str | None = None,
    cache_scope: CacheScope = "flow-run",
    tenant: str | None = None,
    history: str | None = None,
) -> AgentResult:
    """The async form of :func:`run_agent`, for async flows."""
    return await _call(agent, prompt, model, cache_scope, tenant, history)
