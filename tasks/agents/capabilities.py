"""What a model can do: structured output, tools, vision, context window.

The answer comes from FastAgent's model data, from what aiorch knows of the bundled
local model, or from a live probe of the endpoint (:func:`probe_capabilities`) whose
result is kept under ``AIORCH_DATA_DIR/capabilities/`` and wins over the static data
from then on. Agent calls check it before any model is called, so asking a model for
something it cannot do fails at once with the field to change.

Example:
    ```python
    from aiorch.tasks.agents.capabilities import model_capabilities

    print(model_capabilities("openai.gpt-4.1-mini", None).context_window)  # 1047576
    ```
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal, cast

import httpx
from fast_agent.llm.model_database import ModelDatabase
from fast_agent.llm.model_factory import ModelFactory
from fast_agent.llm.provider_types import Provider
from pydantic import ConfigDict, Field, ValidationError

from aiorch.agent_blocks.provider import LOCAL_MODEL, ModelProvider, ProviderKind
from aiorch.core.errors import ConfigurationError
from aiorch.core.models import AiorchModel
from aiorch.core.settings import load_settings
from aiorch.tasks.agents.endpoints import connection_arguments, credential_fingerprint

CapabilitySource = Literal["fast-agent", "local-model", "probe", "unknown"]
JsonMode = Literal["schema", "object"]
PROBE_TIMEOUT_SECONDS = 60.0
_PROBE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "integer"}},
    "required": ["answer"],
}


class ModelCapabilities(AiorchModel):
    """What one model supports; ``None`` means not known."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    structured_output: bool | None = Field(description="Replies that follow a JSON schema.")
    json_mode: JsonMode | None = Field(
        default=None,
        description=(
            "How to ask for JSON: `schema` (response_format json_schema) or `object` "
            "(json_object, with the schema in the prompt)."
        ),
    )
    tools: bool | None = Field(description="Calls tools (function calling).")
    vision: bool | None = Field(description="Takes images as input.")
    context_window: int | None = Field(description="Tokens of input plus output.")
    max_output_tokens: int | None = None
    source: CapabilitySource


def local_model_capabilities() -> ModelCapabilities:
    """What the bundled model can do.

    llama-cpp-python's server accepts ``response_format`` ``json_object`` (not the newer
    ``json_schema``) and enforces it with a JSON grammar, so the reply is always JSON
    and FastAgent puts the schema in the prompt. Tools are offered through aiorch's chat
    handler in the server (:mod:`aiorch.tasks.agents.local_model_tools`).
    """
    context = load_settings().local_model_context_tokens
    return ModelCapabilities(
        model=LOCAL_MODEL,
        structured_output=True,
        json_mode="object",
        tools=True,
        vision=False,
        context_window=context,
        max_output_tokens=context // 2,
        source="local-model",
    )


def _probe_file(model: str, provider: ModelProvider | None) -> Path:
    identity = f"{credential_fingerprint(provider)}|{model}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:32]
    return load_settings().resolved_data_dir() / "capabilities" / f"{digest}.json"


def _from_fast_agent(model: str) -> ModelCapabilities | None:
    parsed = ModelFactory.parse_model_string(model)
    params = ModelDatabase.get_model_params(parsed.model_name)
    if params is None:
        return None
    json_mode = params.json_mode if params.json_mode in ("schema", "object") else None
    return ModelCapabilities(
        model=model,
        structured_output=json_mode is not None,
        json_mode=cast(JsonMode | None, json_mode),
        tools=True,
        vision=any(kind.startswith("image/") for kind in params.tokenizes),
        context_window=params.context_window,
        max_output_tokens=params.max_output_tokens,
        source="fast-agent",
    )


def model_capabilities(model: str, provider: ModelProvider | None) -> ModelCapabilities:
    """What ``model`` (reached through ``provider``) supports, without calling it."""
    probed = _probe_file(model, provider)
    if probed.exists():
        try:
            return ModelCapabilities.model_validate_json(probed.read_text())
        except ValidationError:
            probed.unlink(missing_ok=True)
    if provider is not None and provider.kind is ProviderKind.LOCAL and model == LOCAL_MODEL:
        return local_model_capabilities()
    known = _from_fast_agent(model)
    if known is not None:
        return known
    return ModelCapabilities(
        model=model,
        structured_output=None,
        tools=None,
        vision=None,
        context_window=None,
        source="unknown",
    )


def _chat(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any] | None:
    response = client.post("/chat/completions", json=body)
    if response.status_code >= 400:
        return None
    choices = response.json().get("choices") or [{}]
    message: dict[str, Any] = choices[0].get("message") or {}
    return message


def probe_capabilities(model: str, provider: ModelProvider) -> ModelCapabilities:
    """Ask the live endpoint what ``model`` supports and remember the answer.

    Sends two small requests to an OpenAI-compatible endpoint: one with a JSON-schema
    ``response_format`` (structured output) and one that requires a tool call (tools).
    The context window is kept from the static data (endpoints do not report it).

    Raises:
        ValueError: the provider is not OpenAI-compatible (only those can be probed).
        httpx.HTTPError: the endpoint could not be reached.
    """
    served_by = ModelFactory.parse_model_string(model).provider
    if served_by not in {Provider.GENERIC, Provider.OPENAI}:
        raise ConfigurationError(
            f"model {model!r}: only OpenAI-compatible endpoints (generic.*, openai.*) can "
            "be probed; other providers' capabilities come from FastAgent's model data"
        )
    arguments = connection_arguments(provider)
    base_url = arguments.get("base_url", "https://api.openai.com/v1")
    headers = {"Authorization": f"Bearer {arguments.get('api_key', '')}"}
    name = ModelFactory.parse_model_string(model).model_name
    ask = [
        {
            "role": "user",
            "content": 'What is 2 + 2? Reply with JSON like {"answer": <integer>}.',
        }
    ]
    with httpx.Client(base_url=base_url, headers=headers, timeout=PROBE_TIMEOUT_SECONDS) as client:
        # JSON-schema mode first; servers that only know JSON mode (llama-cpp-python's)
        # refuse it, so JSON mode with the schema in the prompt is tried next.
        json_mode: JsonMode | None = None
        formats: list[tuple[JsonMode, dict[str, Any]]] = [
            (
                "schema",
                {"type": "json_schema", "json_schema": {"name": "probe", "schema": _PROBE_SCHEMA}},
            ),
            ("object", {"type": "json_object"}),
        ]
        for mode, response_format in formats:
            reply = _chat(
                client,
                {
                    "model": name,
                    "messages": ask,
                    "max_tokens": 32,
                    "temperature": 0,
                    "response_format": response_format,
                },
            )
            if reply is not None and _follows_schema(reply):
                json_mode = mode
                break
        tools = _chat(
            client,
            {
                "model": name,
                "messages": [{"role": "user", "content": "Add 2 and 2 with the add tool."}],
                "max_tokens": 64,
                "temperature": 0,
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "add",
                            "description": "Add two integers.",
                            "parameters": {
                                "type": "object",
                                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                                "required": ["a", "b"],
                            },
                        },
                    }
                ],
                "tool_choice": "required",
            },
        )
    static = model_capabilities(model, provider)
    result = ModelCapabilities(
        model=model,
        structured_output=json_mode is not None,
        json_mode=json_mode,
        tools=bool(tools and tools.get("tool_calls")),
        vision=static.vision,
        context_window=static.context_window,
        max_output_tokens=static.max_output_tokens,
        source="probe",
    )
    target = _probe_file(model, provider)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_suffix(f".{os.getpid()}.tmp")
    staging.write_text(result.model_dump_json())
    staging.replace(target)
    return result


def _follows_schema(message: dict[str, Any]) -> bool:
    try:
        value = json.loads(message.get("content") or "")
    except json.JSONDecodeError:
        return False
    return isinstance(value, dict) and isinstance(value.get("answer"), int)
