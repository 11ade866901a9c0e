"""One model request as a Prefect task, stored under a key so a retried flow replays it.

The key covers everything that decides the reply: the conversation sent (without
timestamps and other metadata), the model, the instruction and request settings, the
tools offered, the output schema, and the endpoint's fingerprint (base URL and a hash
of the credential, never the credential). It is scoped to the flow run by default,
so only that run's retries replay it, or to a named tenant.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable
from typing import Any
from uuid import UUID

from fast_agent.types import PromptMessageExtended, RequestParams
from fast_agent.types.llm_stop_reason import LlmStopReason
from mcp.types import Tool
from prefect import get_run_logger, task
from prefect.events import emit_event
from prefect.runtime import flow_run
from pydantic import ConfigDict

from aiorch.agent_blocks.agent import Agent
from aiorch.agent_blocks.provider import ProviderKind
from aiorch.core.errors import ConfigurationError
from aiorch.core.events import MODEL_USAGE_EVENT, related_flow_run
from aiorch.core.models import AiorchModel
from aiorch.tasks.agents.breaker import model_breaker
from aiorch.tasks.agents.capabilities import JsonMode
from aiorch.tasks.agents.conversation import canonical_messages, dump_history, parse_history
from aiorch.tasks.agents.diagnosis import diagnose_endpoint
from aiorch.tasks.agents.endpoints import connection_arguments, credential_fingerprint, secrets_of
from aiorch.tasks.agents.errors import UNREACHED_TYPES, AgentCallError, error_from_reply
from aiorch.tasks.agents.llm_agents import agent_factory
from aiorch.tasks.agents.local_model import LocalModelServer
from aiorch.tasks.agents.result import CacheScope
from aiorch.tasks.agents.runtime import AgentRuntime
from aiorch.tasks.agents.usage import TokenUsage, estimated_cost, reported_usage
from aiorch.tasks.durable import PrecomputedKey

REQUEST_KEY_VERSION = "aiorch-model-request-v2"


class ModelReply(AiorchModel):
    """What one model request returned; stored, so a replay reports it unchanged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    message_json: str
    model: str
    stop_reason: str
    usage: TokenUsage
    latency_seconds: float
    estimated_cost: float | None = None

    def message(self) -> PromptMessageExtended:
        """The reply as a FastAgent message."""
        return parse_history(self.message_json)[0]


def emit_model_usage(reply: ModelReply, *, cache_hit: bool, task_run_id: UUID | None) -> None:
    """Emit ``aiorch.model.usage`` for one model request (a replay says so)."""
    emit_event(
        event=MODEL_USAGE_EVENT,
        resource={
            "prefect.resource.id": f"prefect.task-run.{task_run_id}"
            if task_run_id
            else "aiorch.model",
            "aiorch.model": reply.model,
        },
        related=related_flow_run(flow_run.get_id()),
        payload={
            "model": reply.model,
            "input_tokens": reply.usage.input_tokens,
            "output_tokens": reply.usage.output_tokens,
            "usage_source": reply.usage.source,
            "latency_seconds": reply.latency_seconds,
            "cache_hit": cache_hit,
            "estimated_cost": reply.estimated_cost,
        },
    )


def cache_owner(scope: CacheScope, tenant: str | None) -> str | None:
    """Who may replay a stored request, or None when nothing may be stored."""
    if scope == "tenant":
        if not tenant:
            raise ConfigurationError(
                "cache_scope='tenant' needs tenant=...: name whose results may be shared"
            )
        return f"tenant:{tenant}"
    run_id = flow_run.get_id()
    return None if run_id is None else f"flow-run:{run_id}"


def request_cache_key(
    config: Agent,
    model: str,
    messages: list[PromptMessageExtended],
    owner: str | None,
    tools: list[Tool] | None = None,
    output_schema: dict[str, Any] | None = None,
    json_mode: JsonMode | None = None,
) -> str | None:
    """The key a model request is stored under, or None when it must not be stored."""
    if owner is None:
        return None
    payload = {
        **_decisive(config, model, messages, tools, output_schema, json_mode),
        "scope": owner,
        "endpoint": credential_fingerprint(config.provider),
    }
    encoded = json.dumps(payload, sort_keys=True).encode()
    return f"model-request-{hashlib.sha256(encoded).hexdigest()}"


def request_identity(
    config: Agent,
    model: str,
    messages: list[PromptMessageExtended],
    tools: list[Tool] | None = None,
    output_schema: dict[str, Any] | None = None,
    json_mode: JsonMode | None = None,
) -> str:
    """What decides a request's reply, hashed: the cache key without scope or endpoint.

    Recordings match requests by it, so a recording made with one provider key is
    replayed without any.
    """
    payload = _decisive(config, model, messages, tools, output_schema, json_mode)
    encoded = json.dumps(payload, sort_keys=True).encode()
    return f"request-{hashlib.sha256(encoded).hexdigest()}"


def _decisive(
    config: Agent,
    model: str,
    messages: list[PromptMessageExtended],
    tools: list[Tool] | None,
    output_schema: dict[str, Any] | None,
    json_mode: JsonMode | None,
) -> dict[str, Any]:
    return {
        "version": REQUEST_KEY_VERSION,
        "model": model,
        "instruction": config.instruction,
        "temperature": config.temperature,
        "max_tokens": config.max_tokens,
        "messages": canonical_messages(messages),
        "tools": [
            tool.model_dump(mode="json", include={"name", "input_schema"}) for tool in tools or []
        ],
        "output_schema": output_schema,
        "json_mode": json_mode,
    }


def _counted_usage(
    config: Agent, messages: list[PromptMessageExtended], reply: PromptMessageExtended
) -> TokenUsage:
    server = LocalModelServer.shared()
    sent = [config.instruction, *(message.all_text() for message in messages)]
    return TokenUsage(
        input_tokens=server.count_tokens(sent),
        output_tokens=server.count_tokens([reply.all_text()]),
        source="tokenizer",
    )


def _structured_params(
    schema: dict[str, Any] | None, json_mode: JsonMode | None
) -> RequestParams | None:
    if schema is None:
        return None
    if json_mode == "object":
        # JSON mode: FastAgent adds the schema to the prompt, and servers that take a
        # schema alongside json_object (llama.cpp, Together, Anyscale) enforce it.
        return RequestParams(
            structured_schema=schema, response_format={"type": "json_object", "schema": schema}
        )
    return RequestParams(structured_schema=schema)


async def _checked(
    call: Awaitable[tuple[PromptMessageExtended, float]],
    model: str,
    secrets: list[str],
    timeout: float | None,
    base_url: str | None = None,
) -> tuple[PromptMessageExtended, float]:
    """The reply, or its failure raised as an AgentCallError (so the breaker sees it).

    A failure the SDK can only call a timeout or a connection error is diagnosed at
    ``base_url`` (refused, DNS, TLS, no answer), which also decides ``retryable``.
    """
    try:
        reply, latency = await call
    except TimeoutError:
        raise AgentCallError(
            f"no reply within {timeout}s (provider.request_timeout_seconds)",
            model=model,
            retryable=True,
            error_type="Timeout",
        ) from None
    failure = error_from_reply(reply, model, secrets)
    if failure is not None and failure.error_type in UNREACHED_TYPES and base_url is not None:
        found = await asyncio.to_thread(diagnose_endpoint, base_url)
        raise AgentCallError(
            found.detail,
            model=model,
            retryable=found.retryable,
            error_type=f"{failure.error_type}: {found.kind}",
        ) from None
    if failure is not None:
        raise failure
    return reply, latency


@task(name="model-request", persist_result=True, cache_policy=PrecomputedKey())
async def model_request(
    config: Agent,
    model: str,
    messages_json: str,
    cache_key: str | None,
    tools: list[Tool] | None = None,
    output_schema: dict[str, Any] | None = None,
    json_mode: JsonMode | None = None,
) -> ModelReply:
    """Send one request (the whole conversation) to ``model``; store the reply.

    Raises:
        AgentCallError: the provider failed, refused or did not answer in time
            (nothing is stored).
    """
    provider = config.provider
    secrets = secrets_of(provider, model)
    timeout = provider.request_timeout_seconds if provider else None
    messages = parse_history(messages_json)
    arguments = await asyncio.to_thread(connection_arguments, provider)
    params = _structured_params(output_schema, json_mode)
    runtime = AgentRuntime.shared()

    async def on_runtime() -> tuple[PromptMessageExtended, float]:
        async with agent_factory(runtime).lease(config, model, arguments) as llm_agent:
            started = time.perf_counter()
            async with asyncio.timeout(timeout) as window:
                reply = await llm_agent.generate(messages, request_params=params, tools=tools)
            if reply.stop_reason == LlmStopReason.CANCELLED:
                # FastAgent turns cancellation into a reply; give it back its meaning.
                if window.expired():
                    raise TimeoutError
                raise asyncio.CancelledError
            return reply, time.perf_counter() - started

    breaker = model_breaker(credential_fingerprint(provider), model)
    reply, latency = await breaker.call(
        lambda: _checked(
            runtime.acall(on_runtime), model, secrets, timeout, arguments.get("base_url")
        )
    )
    usage = reported_usage(reply)
    if not usage.total_tokens and provider is not None and provider.kind is ProviderKind.LOCAL:
        usage = await asyncio.to_thread(_counted_usage, config, messages, reply)
    get_run_logger().info(
        "model request to %s took %.2f s (%d tokens)", model, latency, usage.total_tokens
    )
    return ModelReply(
        message_json=dump_history([reply]),
        model=model,
        stop_reason=str(reply.stop_reason.value if reply.stop_reason else "unknown"),
        usage=usage,
        latency_seconds=latency,
        estimated_cost=estimated_cost(usage, model, provider),
    )
