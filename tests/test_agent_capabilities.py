"""Structured output and capability detection, checked before any model is called."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from aiorch.agent_blocks import Agent, ModelProvider
from aiorch.tasks.agents.capabilities import model_capabilities
from aiorch.tasks.agents.errors import StructuredOutputError
from tests.agent_flows import call_in_flow

CANARY = "sk-capability-canary-77d1"


class City(BaseModel):
    name: str
    country: str


def test_structured_output_is_parsed_into_the_output_type(prefect_api: str) -> None:
    agent = Agent(instruction="x", model="passthrough")
    reply = '***FIXED_RESPONSE {"name": "Paris", "country": "France"}'
    result = call_in_flow(agent, reply, output_type=City)
    assert result.output == City(name="Paris", country="France")


@pytest.mark.logs_errors("StructuredOutputError")
def test_an_output_schema_on_the_block_is_checked(prefect_api: str) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    agent = Agent(instruction="x", model="passthrough", output_schema=schema)
    assert call_in_flow(agent, '***FIXED_RESPONSE {"n": 3}').output == {"n": 3}
    with pytest.raises(StructuredOutputError, match="does not satisfy the output schema"):
        call_in_flow(agent, '***FIXED_RESPONSE {"n": "three"}')


@pytest.mark.logs_errors("StructuredOutputError")
def test_a_reply_that_is_not_json_fails_as_structured_output_error(prefect_api: str) -> None:
    agent = Agent(instruction="x", model="passthrough")
    with pytest.raises(StructuredOutputError) as caught:
        call_in_flow(agent, "***FIXED_RESPONSE Paris, I think", output_type=City)
    assert caught.value.retryable is False


@pytest.mark.logs_errors("ConfigurationError")
def test_structured_output_from_a_model_that_cannot_fails_before_any_call(
    prefect_api: str,
) -> None:
    provider = ModelProvider(kind="anthropic", api_key=SecretStr(CANARY))
    agent = Agent(instruction="x", model="anthropic.claude-3-5-haiku", provider=provider)
    with pytest.raises(
        ValueError, match=r"output_type: model 'anthropic\.claude-3-5-haiku' cannot"
    ):
        call_in_flow(agent, "hi", output_type=City)


@pytest.mark.logs_errors("ConfigurationError")
def test_a_missing_api_key_fails_before_any_call(
    prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    agent = Agent(instruction="x", model="openai.gpt-4.1-mini")
    with pytest.raises(ValueError, match=r"needs an API key: set api_key .* OPENAI_API_KEY"):
        call_in_flow(agent, "hi")


def test_an_invalid_output_schema_is_refused_by_the_block() -> None:
    with pytest.raises(ValidationError, match="output_schema is not a valid JSON schema"):
        Agent(instruction="x", model="passthrough", output_schema={"type": "no-such-type"})


def test_capabilities_come_from_fast_agents_model_data() -> None:
    known = model_capabilities("openai.gpt-4.1-mini", None)
    assert known.source == "fast-agent"
    assert known.structured_output is True
    assert known.vision is True
    assert (known.context_window or 0) > 100_000
    unknown = model_capabilities(
        "generic.my-own-model", ModelProvider(kind="generic", base_url="http://127.0.0.1:9/v1")
    )
    assert (unknown.source, unknown.structured_output, unknown.context_window) == (
        "unknown",
        None,
        None,
    )


def test_the_local_models_capabilities_are_declared() -> None:
    local = model_capabilities("generic.smollm2", ModelProvider(kind="local"))
    assert local.source == "local-model"
    assert local.structured_output is True  # llama.cpp's JSON mode is a grammar
    assert local.tools is True  # through aiorch's chat handler in the server
    assert local.context_window == 4096
    # Another model next to a local provider (a fallback, an override) keeps its own data.
    assert model_capabilities("passthrough", ModelProvider(kind="local")).source == "fast-agent"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"kind": "local", "base_url": "http://x/v1"},
            "base_url must be empty when kind is 'local'",
        ),
    ],
)
def test_invalid_providers_name_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModelProvider.model_validate(fields)


def test_the_local_provider_serves_only_the_bundled_model() -> None:
    with pytest.raises(ValidationError, match=r"the local provider serves only 'generic\.smollm2'"):
        Agent(instruction="x", model="generic.other", provider=ModelProvider(kind="local"))


def test_the_command_line_shows_capabilities_and_refuses_bad_input(
    prefect_api: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from aiorch.cli import main

    assert main(["model", "capabilities", "openai.gpt-4.1-mini"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["source"], shown["json_mode"]) == ("fast-agent", "schema")
    assert main(["model", "probe", "generic.x"]) == 2
    assert "generic.x' is a generic.* model: set provider" in capsys.readouterr().err
    assert main(["model", "capabilities", "nope.nope"]) == 2
    assert "is not a model FastAgent knows" in capsys.readouterr().err
