"""A block holding the connection settings and credentials of one model provider.

Example:
    ```python
    from pydantic import SecretStr

    from aiorch.agent_blocks import ModelProvider

    local = ModelProvider(
        kind="generic",
        base_url="http://127.0.0.1:8080/v1",
        api_key=SecretStr("not-needed-locally"),
    )
    local.save("local-llama", overwrite=True)
    ```
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from prefect.blocks.core import Block
from pydantic import AnyHttpUrl, ConfigDict, Field, SecretStr, model_validator

from aiorch.core.blocks import StrictFields
from aiorch.core.models import AiorchModel

LOCAL_MODEL_NAME = "smollm2"
LOCAL_MODEL = f"generic.{LOCAL_MODEL_NAME}"


class ProviderKind(StrEnum):
    """FastAgent provider prefixes aiorch knows how to configure."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    GOOGLE = "google"
    AZURE = "azure"
    DEEPSEEK = "deepseek"
    OPENROUTER = "openrouter"
    GENERIC = "generic"
    LOCAL = "local"

    @property
    def model_prefix(self) -> str:
        """The FastAgent model prefix this kind serves.

        ``local`` is an OpenAI-compatible server aiorch starts itself, so FastAgent sees
        it as ``generic``.
        """
        return "generic" if self is ProviderKind.LOCAL else self.value


class TokenPrice(AiorchModel):
    """What a model charges, per million tokens, for cost estimates."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_million: float = Field(ge=0, description="Price of one million input tokens.")
    output_per_million: float = Field(ge=0, description="Price of one million output tokens.")


class ModelProvider(StrictFields, Block):
    """Where a model provider is reached and with which credentials.

    The API key is a secret: the Prefect API and UI show it masked, and aiorch never
    writes it to logs, artifacts, events or cache keys.
    """

    _block_type_name = "aiorch Model Provider"
    _block_type_slug = "aiorch-model-provider"
    _description = (
        "Connection settings and credentials of one language-model provider "
        "(OpenAI, Anthropic, a local OpenAI-compatible server, ...) used by aiorch agents."
    )

    kind: ProviderKind = Field(
        default=ProviderKind.GENERIC,
        description=(
            "Provider type, as FastAgent's model prefix: `generic` is any "
            "OpenAI-compatible endpoint (llama.cpp, vLLM, Ollama) and needs a base URL; "
            "`local` is the bundled SmolLM2 model, which aiorch serves itself "
            "(the `model` extra; use the model `generic.smollm2`)."
        ),
    )
    base_url: AnyHttpUrl | None = Field(
        default=None,
        description="Endpoint, e.g. http://127.0.0.1:8080/v1. Empty means the provider's own.",
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="API key. Leave empty for local servers that need none.",
    )
    request_timeout_seconds: float = Field(
        default=120.0,
        gt=0,
        description="How long one model request may take before it fails as retryable.",
    )
    max_concurrent_requests: int | None = Field(
        default=None,
        ge=1,
        description="Upper bound on requests in flight to this provider; empty for no bound.",
    )

    prices: dict[str, TokenPrice] = Field(
        default_factory=dict,
        description=(
            "Prices by model name (as in the model string after the provider prefix, "
            "e.g. gpt-4.1-mini) for cost estimates; models not listed get no estimate."
        ),
    )

    @model_validator(mode="after")
    def _generic_needs_base_url(self) -> Self:
        # FastAgent's generic provider falls back to api.openai.com without a base URL,
        # which would send a local model's traffic, and any key, to the wrong place.
        if self.kind is ProviderKind.GENERIC and self.base_url is None:
            raise ValueError(
                "base_url is required when kind is 'generic': set it to the "
                "OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1"
            )
        if self.kind is ProviderKind.LOCAL and self.base_url is not None:
            raise ValueError(
                "base_url must be empty when kind is 'local': aiorch starts the local "
                "model server itself; use kind 'generic' for a server you run"
            )
        return self

    def price_of(self, model: str) -> TokenPrice | None:
        """The configured price of ``model`` (with or without its provider prefix)."""
        return self.prices.get(model) or self.prices.get(model.partition(".")[2])
