"""A block describing one agent: instruction, model, fallbacks and request settings.

A flow loads the agent from its block when it runs, so editing the block in the Prefect
UI changes the next run without a redeploy.

Example:
    ```python
    from aiorch.agent_blocks import Agent, ModelProvider

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

from typing import Any, Literal, Self

from jsonschema import SchemaError
from jsonschema.validators import validator_for
from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, field_validator, model_validator

from aiorch.agent_blocks.provider import LOCAL_MODEL, ModelProvider, ProviderKind
from aiorch.core.access import AccessRole
from aiorch.core.blocks import StrictFields
from aiorch.core.errors import ConfigurationError
from aiorch.core.models import AiorchModel
from aiorch.core.redaction import quoted


def check_model(model: str, field: str = "model") -> str:
    """Accept ``model`` if FastAgent can parse it; else name the field and the fix."""
    # FastAgent loads when a model string is first checked, not when blocks are imported.
    from fast_agent.core.exceptions import ModelConfigError
    from fast_agent.llm.model_factory import ModelFactory

    try:
        ModelFactory.parse_model_string(model)
    except ModelConfigError:
        raise ConfigurationError(
            f"{field} {quoted(model)} is not a model FastAgent knows; use provider.model, e.g. "
            "'openai.gpt-4.1-mini', 'generic.<name>' for an OpenAI-compatible server, or "
            "'passthrough' for tests"
        ) from None
    return model


class HistoryPolicy(AiorchModel):
    """How a conversation is kept inside the model's context window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Literal["truncate", "summarize", "keep"] = Field(
        default="truncate",
        description=(
            "`truncate` drops the oldest turns that do not fit; `summarize` replaces them "
            "with a summary the model writes (one more cached model request); `keep` "
            "sends everything and lets the provider refuse an oversized request."
        ),
    )
    max_context_tokens: int | None = Field(
        default=None,
        ge=256,
        description=(
            "Token budget for instruction, history, prompt and reply. Empty uses the "
            "model's context window from its capabilities."
        ),
    )


class McpServer(AiorchModel):
    """An MCP server whose tools the agent may call; each call runs as its own task."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=r"^[A-Za-z][A-Za-z0-9_-]*$",
        description="Short name; tools are offered to the model as <name>__<tool>.",
    )
    command: str | None = Field(
        default=None, description="Executable of a stdio server, e.g. uvx or python."
    )
    args: list[str] = Field(default_factory=list, description="Arguments of the command.")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Plain environment variables of a stdio server (not for secrets).",
    )
    secret_env: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Environment variables whose values are secrets: variable name -> a Secret "
            "block's name, env:VARIABLE or file:PATH (a mounted secret). Read when the "
            "server starts (a changed value restarts it); never stored in this block, "
            "logged or shown."
        ),
    )
    url: str | None = Field(
        default=None, description="URL of a streamable-HTTP server (instead of a command)."
    )
    read_timeout_seconds: float = Field(
        default=60.0, gt=0, description="How long one tool call may take."
    )

    @model_validator(mode="after")
    def _one_transport(self) -> Self:
        if (self.command is None) == (self.url is None):
            raise ValueError(
                f"MCP server {quoted(self.name)} needs exactly one of command (a stdio server) "
                "or url (a streamable-HTTP server)"
            )
        return self


class Agent(StrictFields, Block):
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
    temperature: float | None = Field(
        default=None,
        ge=0,
        le=2,
        description="Sampling temperature; 0 for repeatable answers. Empty: the model's default.",
    )
    max_tokens: int | None = Field(default=None, ge=1, description="Upper bound per reply.")
    history: HistoryPolicy = Field(
        default_factory=HistoryPolicy,
        description="How long conversations are kept inside the model's context window.",
    )
    mcp_servers: list[McpServer] = Field(
        default_factory=list,
        description="MCP servers whose tools the model may call.",
    )
    role: AccessRole | None = Field(
        default=None,
        description=(
            "Least privilege: the MCP tools (and secrets) this agent may use; tools the "
            "role does not grant are neither offered nor run. Empty: no restriction."
        ),
    )
    max_tool_rounds: int = Field(
        default=8,
        ge=1,
        description="Model requests one call may make while the model keeps calling tools.",
    )
    output_schema: dict[str, Any] | None = Field(
        default=None,
        description=(
            "JSON schema the reply must satisfy (structured output); the parsed value is "
            "in the result's `output`. A task's output_type overrides it."
        ),
    )

    @field_validator("instruction")
    @classmethod
    def _instruction_says_something(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(
                "instruction is only whitespace; write what the agent is for, e.g. "
                "'You summarise incident reports in three bullet points.'"
            )
        return value

    @field_validator("model")
    @classmethod
    def _model_known(cls, value: str) -> str:
        return check_model(value)

    @field_validator("fallback_models")
    @classmethod
    def _fallbacks_known(cls, value: list[str]) -> list[str]:
        return [check_model(model, "fallback_models entry") for model in value]

    @field_validator("output_schema")
    @classmethod
    def _schema_valid(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        try:
            validator_for(value).check_schema(value)
        except SchemaError as error:
            raise ValueError(
                f"output_schema is not a valid JSON schema ({error.message}); "
                "give an object schema, e.g. {'type': 'object', 'properties': {...}}"
            ) from None
        return value

    @field_validator("mcp_servers")
    @classmethod
    def _server_names_unique(cls, value: list[McpServer]) -> list[McpServer]:
        names = [server.name for server in value]
        if len(set(names)) != len(names):
            raise ValueError("mcp_servers names must be unique: tools are named <server>__<tool>")
        return value

    @model_validator(mode="after")
    def _provider_matches(self) -> Self:
        check_provider(self.model, self.provider)
        for model in self.fallback_models:
            check_provider(model, self.provider, "fallback_models entry")
        return self


def check_provider(model: str, provider: ModelProvider | None, field: str = "model") -> None:
    """Refuse a model the provider block cannot serve, naming the field and the fix."""
    from fast_agent.llm.model_factory import ModelFactory
    from fast_agent.llm.provider_types import Provider

    served_by = ModelFactory.parse_model_string(model).provider
    if served_by is Provider.GENERIC and (
        provider is None or (not provider.base_url and provider.kind is not ProviderKind.LOCAL)
    ):
        raise ConfigurationError(
            f"{field} {model!r} is a generic.* model: set provider to a ModelProvider "
            "with base_url (the OpenAI-compatible endpoint), or kind 'local' for the "
            "bundled model"
        )
    # Test models of FastAgent's own ("fast-agent" provider) need no endpoint or key.
    if served_by is Provider.FAST_AGENT or provider is None:
        return
    if provider.kind.model_prefix != served_by.value:
        raise ConfigurationError(
            f"{field} {quoted(model)} is served by {served_by.value!r} but provider.kind is "
            f"{provider.kind.value!r}; use a matching provider block"
        )
    if provider.kind is ProviderKind.LOCAL and model != LOCAL_MODEL:
        raise ConfigurationError(
            f"{field} {model!r}: the local provider serves only {LOCAL_MODEL!r}; use that "
            "model, or kind 'generic' with the base_url of your own server"
        )
