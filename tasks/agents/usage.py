"""Token usage of model requests and their estimated cost.

Providers report usage on each reply (FastAgent's ``fast-agent-usage`` channel).
llama.cpp's server streams none, so for the bundled local model aiorch counts the
tokens with the server's own tokenizer; ``source`` says which it was.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict

from aiorch.agent_blocks.provider import ModelProvider
from aiorch.core.models import AiorchModel

if TYPE_CHECKING:
    from fast_agent.types import PromptMessageExtended

USAGE_CHANNEL = "fast-agent-usage"
UsageSource = Literal["provider", "tokenizer", "none"]


class TokenUsage(AiorchModel):
    """Tokens used, as the provider reported them or as aiorch counted them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0
    source: UsageSource = "none"

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        sources = {self.source, other.source} - {"none"}
        return TokenUsage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            source=sources.pop() if len(sources) == 1 else ("provider" if sources else "none"),
        )


def reported_usage(reply: PromptMessageExtended) -> TokenUsage:
    """The usage the provider reported on ``reply``, if any."""
    for block in (reply.channels or {}).get(USAGE_CHANNEL, []):
        try:
            data: dict[str, Any] = json.loads(getattr(block, "text", "") or "{}")
        except json.JSONDecodeError:
            continue
        turn = data.get("turn", data)
        usage = TokenUsage(
            input_tokens=int(turn.get("input_tokens", 0) or 0),
            output_tokens=int(turn.get("output_tokens", 0) or 0),
            source="provider",
        )
        if usage.total_tokens:
            return usage
    return TokenUsage()


def estimated_cost(usage: TokenUsage, model: str, provider: ModelProvider | None) -> float | None:
    """What ``usage`` costs at the provider's configured price, or None without a price."""
    price = provider.price_of(model) if provider is not None else None
    if price is None:
        return None
    return (
        usage.input_tokens * price.input_per_million
        + usage.output_tokens * price.output_per_million
    ) / 1_000_000
