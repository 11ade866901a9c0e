"""A block describing one agent: instruction, model, fallbacks and request settings.

A flow loads the agent from its block when it runs, so editing the block in the Prefect
UI changes the next run without a redeploy.

Example:
    ```python
    from agent_blocks import Agent, ModelProvider

    Agent(
        instruction="Answer in one sentence.",
        model="generic.smollm2",
        provider=ModelProvider.load("local-llama"),
        temperature=0,
        max_tokens=128,
    ).save("summariser", overwrite=True)
    ```
"""

from __future__ import annotations

from typing import Self

from fast_agent.core.exceptions import ModelConfigError
from fast_agent.llm.model_factory import ModelFactory
from fast_agent.llm.provider_types import Provider
from prefect.blocks.core import Block
from pydantic import Field, field_validator, model_validator

from agent_blocks.provider import ModelProvider

# Test models of FastAgent's own ("fast-agent" provider) need no endpoint or key.
_NEEDS_NO_PROVIDER = {Provider.FAST_AGENT}


def check_model(model: str, field: str = "model") -> str:
    """Accept ``model`` if FastAgent can parse it; else name the field and the fix."""
    try:
        ModelFactory.parse_model_string(model)
    except ModelConfigError:
        raise ValueError(
            f"{field} {model!r} is not a model FastAgent knows; use provider.model, e.g. "
            "'openai.gpt-4.1-mini', 'generic.<name>' for an OpenAI-compatible server, or "
            "'passthrough' for tests"
        ) from None
    return model


class Agent(Block):
    """An agent: what it is told, which model answers, and what to try when it fails."""

    _block_type_name = "aiorch Agent"
    _block_type_slug = "aiorch-agent"
    _description = (
        "A FastAgent agent run by aiorch as a Prefect task: instruction, model (FastAgent "
        "syntax), ordered fallback models, provider credentials and request settings."
    )

    instruction: str = Field(min_length=1, description="The system instruction.")
    model: str = Field(
        description="FastAgent model string, e.g. openai.gpt-4.1-mini or generic.smollm2."
    )
    fallback_models: list[str] = Field(
        default_factory=list,
        description="Models tried in order when the model fails with a retryable error.",
    )
    provider: ModelProvider | None = Field(
        default=None,
        description="Endpoint and credentials; required for generic.* models.",
    )
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, description="Upper bound per reply.")

    @field_validator("model")
    @classmethod
    def _model_known(cls, value: str) -> str:
        return check_model(value)

    @field_validator("fallback_models")
    @classmethod
    def _fallbacks_known(cls, value: list[str]) -> list[str]:
        return [check_model(model, "fallback_models entry") for model in value]

    @model_validator(mode="after")
    def _provider_matches(self) -> Self:
        for model in [self.model, *self.fallback_models]:
            provider = ModelFactory.parse_model_string(model).provider
            if provider is Provider.GENERIC and (
                self.provider is None or not self.provider.base_url
            ):
                raise ValueError(
                    f"model {model!r} is a generic.* model: set provider to a ModelProvider "
                    "with base_url (the OpenAI-compatible endpoint)"
                )
            if (
                provider not in _NEEDS_NO_PROVIDER
                and self.provider is not None
                and (self.provider.kind.value != provider.value)
            ):
                raise ValueError(
                    f"model {model!r} is served by {provider.value!r} but provider.kind is "
                    f"{self.provider.kind.value!r}; use a matching provider block"
                )
        return self
