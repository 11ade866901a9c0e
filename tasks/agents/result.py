"""What an agent call takes and gives back, importable without FastAgent.

``aiorch.tasks.agents.task`` (the Prefect tasks) needs only these to be defined; the
call itself, and FastAgent, MCP and the model clients with it, load when a call runs.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from aiorch.core.models import AiorchModel
from aiorch.tasks.agents.usage import TokenUsage

CacheScope = Literal["flow-run", "tenant"]


class AgentResult(AiorchModel):
    """What one agent call produced."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    text: str
    output: Any = Field(
        default=None,
        description="The reply parsed by the output type or schema (structured output).",
    )
    model: str = Field(description="The model that answered.")
    failed_models: list[str] = Field(
        default_factory=list,
        description="Models tried first that failed with a retryable error (fallbacks used).",
    )
    stop_reason: str
    usage: TokenUsage
    estimated_cost: float | None = Field(
        default=None, description="Cost of the usage at the provider block's prices."
    )
    latency_seconds: float
    requests: int = Field(default=1, description="Model requests the call made.")
    tool_calls: int = Field(default=0, description="MCP tool calls the call made.")
    history_json: str = Field(description="The conversation, in FastAgent's JSON format.")
    history_dropped_messages: int = Field(
        default=0,
        description="Messages left out (truncated or summarised) to fit the context window.",
    )
    cache_hit: bool = Field(
        default=False, description="Every model request was replayed from storage."
    )
    tokens_saved: int = Field(
        default=0, description="Tokens of the replayed requests (not spent again)."
    )
