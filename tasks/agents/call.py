"""The work of an agent call (``run_agent``): checks, the turn, fallbacks, storage.

Before any model is called the configuration is checked against what each model can do
(structured output, tools) and whether its credentials are there. The conversation (from
``history=``, a stored ``conversation=`` key, or none) is fitted to the model's context
window by the block's history policy; then the turn runs: each model request is its own
``model-request`` task and each MCP tool call its own ``tool-call`` task, both stored
under keys scoped to the flow run, so a retried flow replays what completed and still
reports the tokens (as saved). Retryable provider failures move on to the agent's
fallback models; everything else fails with a typed error whose ``retryable`` flag a
``retry_condition_fn`` can use.

This module imports FastAgent, MCP and the model clients; ``aiorch.tasks.agents.task``
imports it when a call runs, so defining a flow costs none of them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

from fast_agent.llm.model_factory import ModelFactory
from fast_agent.llm.provider_key_manager import ProviderKeyManager
from fast_agent.llm.provider_types import Provider
from fast_agent.types import PromptMessageExtended
from jsonschema import ValidationError as SchemaViolation
from jsonschema import validate as validate_schema
from mcp.types import CallToolResult, TextContent, Tool
from prefect import get_run_logger
from prefect.runtime import flow_run
from pydantic import BaseModel
from pydantic import ValidationError as ModelViolation

from aiorch.agent_blocks.agent import Agent, check_model, check_provider
from aiorch.core.errors import ConfigurationError, validation_problems
from aiorch.core.settings import load_settings
from aiorch.tasks.agents.capabilities import ModelCapabilities, model_capabilities
from aiorch.tasks.agents.conversation import (
    SUMMARY_INSTRUCTION,
    SUMMARY_PREFIX,
    dump_history,
    estimate_tokens,
    load_conversation,
    parse_history,
    save_conversation,
    split_to_fit,
    text_message,
    transcript,
)
from aiorch.tasks.agents.errors import AgentCallError, StructuredOutputError
from aiorch.tasks.agents.recording import (
    RecordedRequest,
    RecordedToolCall,
    active_playback,
    active_recorder,
)
from aiorch.tasks.agents.requests import (
    ModelReply,
    cache_owner,
    emit_model_usage,
    model_request,
    request_cache_key,
    request_identity,
)
from aiorch.tasks.agents.result import AgentResult, CacheScope
from aiorch.tasks.agents.tools import (
    check_secret_access,
    granted_tools,
    offered_tools,
    refuse_tool,
    resolve_tool,
    tool_call,
    tool_call_key,
)
from aiorch.tasks.agents.usage import TokenUsage, estimated_cost
from aiorch.tasks.blocks import aload_block
from aiorch.tasks.durable import CallOptions, call_stored
from aiorch.tasks.naming import model_request_run_name, tool_call_run_name
from aiorch.tasks.resilience.breaker import CircuitOpenError

DEFAULT_CONTEXT_TOKENS = 8192
DEFAULT_REPLY_RESERVE_TOKENS = 1024
TOOL_USE = "toolUse"


async def _load(agent: Agent | str, overrides: dict[str, Any] | None) -> Agent:
    config = agent if isinstance(agent, Agent) else await aload_block(Agent, agent)
    if not overrides:
        return config
    unknown = sorted(set(overrides) - set(Agent.model_fields))
    if unknown:
        raise ConfigurationError(
            f"overrides: {unknown} are not agent fields; use some of {sorted(Agent.model_fields)}"
        )
    try:
        return Agent.model_validate({**dict(config), **overrides})
    except ModelViolation as error:
        raise ConfigurationError(f"overrides: {validation_problems(error, 'agent')}") from None


def _check_credentials(model: str, config: Agent) -> None:
    served_by = ModelFactory.parse_model_string(model).provider
    if served_by in {Provider.FAST_AGENT, Provider.GENERIC}:
        return
    if config.provider is not None and config.provider.api_key is not None:
        return
    variable = ProviderKeyManager.get_env_key_name(served_by.value)
    if variable and os.environ.get(variable):
        return
    raise ConfigurationError(
        f"model {model!r} needs an API key: set api_key on the agent's provider block "
        f"(a ModelProvider of kind {served_by.value!r})"
        + (f" or the environment variable {variable}" if variable else "")
    )


def _preflight(
    config: Agent,
    chain: list[str],
    schema: dict[str, Any] | None,
    schema_field: str,
    *,
    check_credentials: bool = True,
) -> dict[str, ModelCapabilities]:
    """Refuse, before any model is called, what a model in the chain cannot do.

    Returns each model's capabilities, which shape its requests. A replay from a
    recording needs no credentials (``check_credentials=False``).
    """
    known: dict[str, ModelCapabilities] = {}
    for model in chain:
        if check_credentials:
            _check_credentials(model, config)
        capabilities = known[model] = model_capabilities(model, config.provider)
        if schema is not None and capabilities.structured_output is False:
            raise ConfigurationError(
                f"{schema_field}: model {model!r} cannot produce structured output "
                f"(per {capabilities.source} data); choose a model that can, or drop "
                f"{schema_field}"
            )
        if config.mcp_servers and capabilities.tools is False:
            raise ConfigurationError(
                f"mcp_servers: model {model!r} cannot call tools (per {capabilities.source} "
                "data); choose a model that can, or remove the agent's mcp_servers"
            )
    return known


def _budget(config: Agent, capabilities: ModelCapabilities) -> int | None:
    """Tokens the history may take, or None when the policy keeps everything."""
    policy = config.history
    if policy.strategy == "keep":
        return None
    window = policy.max_context_tokens or capabilities.context_window
    reserve = config.max_tokens or DEFAULT_REPLY_RESERVE_TOKENS
    return (window or DEFAULT_CONTEXT_TOKENS) - reserve


def _lock_dir(key: str | None) -> Path | None:
    """Where the locks live that make identical stored calls in flight at once run once.

    Two processes (or threads) making the same model request or tool call with a key
    both could store it: the second waits for the first and replays its record.
    """
    return None if key is None else load_settings().resolved_data_dir() / "locks"


class _Turn:
    """One agent turn on one model: fitting, requests, tool calls, accounting."""

    def __init__(
        self, config: Agent, model: str, capabilities: ModelCapabilities, owner: str | None
    ) -> None:
        self.config = config
        self.model = model
        self.capabilities = capabilities
        self.owner = owner
        self.usage = TokenUsage()
        self.saved = 0
        self.requests = 0
        self.hits = 0
        self.tool_calls = 0

    async def request(
        self,
        messages: list[PromptMessageExtended],
        tools: list[Tool] | None = None,
        schema: dict[str, Any] | None = None,
        instruction: str | None = None,
    ) -> tuple[ModelReply, str | None, str | None]:
        """Send ``messages`` as a ``model-request`` task.

        Returns the reply, its storage key, and (recording or replaying) its identity.
        """
        config = self.config
        if instruction is not None:
            config = config.model_copy(update={"instruction": instruction})
        mode = self.capabilities.json_mode if schema else None
        messages_json = dump_history(messages)
        playback, recorder = active_playback(), active_recorder()
        asked = None
        if playback is not None or recorder is not None:
            asked = RecordedRequest(
                identity=request_identity(config, self.model, messages, tools, schema, mode),
                model=self.model,
                instruction=config.instruction,
                messages_json=messages_json,
                tools=list(tools or []),
            )
        if playback is not None and asked is not None:
            # No task, no model: the recording answers; its identity keys the tool calls.
            reply = playback.reply(asked)
            self.requests += 1
            self.hits += 1
            self.usage = self.usage + reply.usage
            return reply, None, asked.identity
        key = request_cache_key(config, self.model, messages, self.owner, tools, schema, mode)
        stored = await call_stored(
            model_request,
            CallOptions(run_name=model_request_run_name(self.model), lock_dir=_lock_dir(key)),
            config,
            self.model,
            messages_json,
            key,
            tools,
            schema,
            mode,
        )
        reply = stored.value
        if recorder is not None and asked is not None:
            recorder.add_request(asked.model_copy(update={"reply": reply}))
        self.requests += 1
        self.usage = self.usage + reply.usage
        if stored.cache_hit:
            self.hits += 1
            self.saved += reply.usage.total_tokens
        emit_model_usage(reply, cache_hit=stored.cache_hit, task_run_id=stored.task_run_id)
        return reply, key, asked.identity if asked is not None else None

    async def fit(
        self, history: list[PromptMessageExtended], prompt_message: PromptMessageExtended
    ) -> tuple[list[PromptMessageExtended], int]:
        """The history to send, and how many messages were left out."""
        budget = _budget(self.config, self.capabilities)
        if budget is None:
            return history, 0
        room = budget - estimate_tokens([prompt_message], self.config.instruction)
        dropped, kept = split_to_fit(history, room)
        if not dropped:
            return history, 0
        if self.config.history.strategy == "summarize":
            summary, _, _ = await self.request(
                [text_message("user", transcript(dropped))], instruction=SUMMARY_INSTRUCTION
            )
            note = text_message("user", SUMMARY_PREFIX + summary.message().all_text())
            _, kept = split_to_fit(kept, room - estimate_tokens([note]))
            return [note, *kept], len(history) - len(kept)
        return kept, len(dropped)

    async def tools_round(
        self, reply: PromptMessageExtended, request_key: str | None, identity: str | None
    ) -> PromptMessageExtended:
        """Run the reply's tool calls as tasks; the message carrying their results."""
        servers = self.config.mcp_servers
        calls = reply.tool_calls or {}

        async def one(call_id: str, name: str, arguments: dict[str, Any]) -> CallToolResult:
            target = resolve_tool(servers, name)
            if target is None:
                return CallToolResult(
                    content=[TextContent(type="text", text=f"unknown tool {name!r}")],
                    is_error=True,
                )
            role = self.config.role
            if role is not None and not role.allows_tool(name):
                return refuse_tool(role, name)
            server, tool = target
            key = tool_call_key(request_key, call_id, server, tool)
            recorded = tool_call_key(identity, call_id, server, tool)
            playback, recorder = active_playback(), active_recorder()
            if playback is not None:
                return playback.tool_result(recorded or "", name)
            options = CallOptions(run_name=tool_call_run_name(name), lock_dir=_lock_dir(key))
            stored = await call_stored(tool_call, options, server, tool, arguments, key)
            if recorder is not None and recorded is not None:
                recorder.add_tool_call(
                    RecordedToolCall(
                        identity=recorded, tool=name, arguments=arguments, result=stored.value
                    )
                )
            return stored.value

        results = await asyncio.gather(
            *(
                one(call_id, call.params.name, dict(call.params.arguments or {}))
                for call_id, call in calls.items()
            )
        )
        self.tool_calls += len(results)
        return PromptMessageExtended(
            role="user", content=[], tool_results=dict(zip(calls, results, strict=True))
        )


def _parse_output(
    text: str, output_type: type[BaseModel] | None, schema: dict[str, Any] | None, model: str
) -> Any:
    if schema is None:
        return None
    try:
        if output_type is not None:
            return output_type.model_validate_json(text)
        value = json.loads(text)
        validate_schema(value, schema)
        return value
    except (ModelViolation, SchemaViolation, json.JSONDecodeError) as error:
        reason = str(error).splitlines()[0]
        raise StructuredOutputError(
            f"the reply does not satisfy the output schema ({reason})", model=model
        ) from None


async def _run_turn(
    config: Agent,
    *,
    model: str,
    capabilities: ModelCapabilities,
    history: list[PromptMessageExtended],
    prompt: str,
    owner: str | None,
    tools: list[Tool],
    output_type: type[BaseModel] | None,
    schema: dict[str, Any] | None,
) -> AgentResult:
    started = time.perf_counter()
    turn = _Turn(config, model, capabilities, owner)
    prompt_message = text_message("user", prompt)
    fitted, dropped = await turn.fit(history, prompt_message)
    kept_history = fitted if config.history.strategy == "summarize" and dropped else history
    sent = [*fitted, prompt_message]
    added: list[PromptMessageExtended] = [prompt_message]
    for _ in range(config.max_tool_rounds):
        reply, key, identity = await turn.request(sent, tools or None, schema)
        message = reply.message()
        added.append(message)
        if reply.stop_reason != TOOL_USE or not message.tool_calls:
            break
        results = await turn.tools_round(message, key, identity)
        added.append(results)
        sent = [*sent, message, results]
    else:
        raise AgentCallError(
            f"still calling tools after max_tool_rounds={config.max_tool_rounds} requests; "
            "raise max_tool_rounds on the agent block or give the model a clearer task",
            model=model,
            retryable=False,
        )
    text = message.last_text() or ""
    return AgentResult(
        text=text,
        output=_parse_output(text, output_type, schema, model),
        model=model,
        stop_reason=reply.stop_reason,
        usage=turn.usage,
        estimated_cost=estimated_cost(turn.usage, model, config.provider),
        latency_seconds=time.perf_counter() - started,
        requests=turn.requests,
        tool_calls=turn.tool_calls,
        history_json=dump_history([*kept_history, *added]),
        history_dropped_messages=dropped,
        cache_hit=turn.hits == turn.requests,
        tokens_saved=turn.saved,
    )


async def call_agent(
    agent: Agent | str,
    prompt: str,
    *,
    model: str | None = None,
    cache_scope: CacheScope = "flow-run",
    tenant: str | None = None,
    history: str | None = None,
    conversation: str | None = None,
    output_type: type[BaseModel] | None = None,
    overrides: dict[str, Any] | None = None,
) -> AgentResult:
    """Run the agent call ``run_agent`` describes (its arguments, its errors)."""
    if not prompt:
        raise ConfigurationError("prompt is empty; pass the text the agent should answer")
    if history is not None and conversation is not None:
        raise ConfigurationError(
            "pass history= or conversation=, not both: conversation= loads the stored history"
        )
    base_messages = parse_history(history)  # refuse a malformed history before any call
    owner = cache_owner(cache_scope, tenant)
    config = await _load(agent, overrides)
    primary = check_model(model, "model override") if model else config.model
    if model:
        check_provider(primary, config.provider, "model override")
    chain = [primary, *[fallback for fallback in config.fallback_models if fallback != primary]]
    schema = output_type.model_json_schema() if output_type is not None else config.output_schema
    capabilities = _preflight(
        config,
        chain,
        schema,
        "output_type" if output_type else "output_schema",
        check_credentials=active_playback() is None,
    )

    stored = await load_conversation(conversation) if conversation else None
    run_id = str(flow_run.get_id()) if flow_run.get_id() else None
    if stored is not None:
        base_json = stored.base_for(run_id, prompt)
        base_messages = parse_history(base_json)
    playback = active_playback()
    # A replay reaches no MCP server: the recorded agent's tools are offered again.
    if playback is not None:
        tools = granted_tools(config.role, playback.offered_tools() if config.mcp_servers else [])
    else:
        check_secret_access(config.role, config.mcp_servers)
        tools = granted_tools(config.role, await offered_tools(config.mcp_servers))
    logger = get_run_logger()
    failed: list[str] = []

    async def on(candidate: str) -> AgentResult:
        return await _run_turn(
            config,
            model=candidate,
            capabilities=capabilities[candidate],
            history=base_messages,
            prompt=prompt,
            owner=owner,
            tools=tools,
            output_type=output_type,
            schema=schema,
        )

    for candidate, fallback in itertools.pairwise(chain):
        try:
            result = await on(candidate)
            break
        except (AgentCallError, CircuitOpenError) as error:
            if not error.retryable:
                raise
            logger.warning("%s; falling back to %r", error, fallback)
            failed.append(candidate)
    else:
        result = await on(chain[-1])
    if result.cache_hit:
        logger.info("agent call on %s replayed from storage", result.model)
    if stored is not None and conversation is not None:
        updated = stored.with_turn(base_json, result.history_json, run_id, prompt)
        await save_conversation(conversation, updated)
    return result.model_copy(update={"failed_models": failed})
