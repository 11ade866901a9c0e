"""Blocks reach the Prefect server through the entry point, and secrets stay masked."""

from __future__ import annotations

import re
from importlib import metadata
from typing import cast

import httpx
import pytest
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import BlockDocumentUpdate
from pydantic import SecretStr, ValidationError

from aiorch.agent_blocks import Agent, HistoryPolicy, McpServer, ModelProvider, ProviderKind
from aiorch.tasks.container.dagger_engine import DaggerEngine

CANARY = "sk-aiorch-canary-5b1e0d"


def test_entry_point_names_the_blocks_module() -> None:
    points = metadata.entry_points(group="prefect.collections")
    assert {point.name: point.value for point in points}.get("aiorch") == "aiorch.blocks"


def test_server_registers_block_types_at_start_up(prefect_api: str) -> None:
    # Nothing in this test registers the block: the server did, from the entry point.
    response = httpx.get(f"{prefect_api}/block_types/slug/aiorch-model-provider", timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "aiorch Model Provider"
    schemas = httpx.post(
        f"{prefect_api}/block_schemas/filter",
        json={"block_schemas": {"block_type_id": {"any_": [response.json()["id"]]}}},
        timeout=10,
    )
    assert schemas.status_code == 200, schemas.text
    assert "api_key" in schemas.json()[0]["fields"]["secret_fields"]
    for slug in ("aiorch-agent", "aiorch-dagger-engine"):
        listed = httpx.get(f"{prefect_api}/block_types/slug/{slug}", timeout=10)
        assert listed.status_code == 200, f"{slug}: {listed.text}"


def test_saved_provider_keeps_its_key_secret(prefect_api: str) -> None:
    provider = ModelProvider(
        kind=ProviderKind.GENERIC,
        base_url="http://127.0.0.1:8080/v1",
        api_key=SecretStr(CANARY),
    )
    provider.save("canary-provider", overwrite=True)

    document = httpx.get(
        f"{prefect_api}/block_types/slug/aiorch-model-provider/block_documents/name/canary-provider",
        timeout=10,
    )
    assert document.status_code == 200, document.text
    assert CANARY not in document.text
    assert document.json()["data"]["api_key"] == "********"
    assert CANARY not in repr(provider)
    assert CANARY not in provider.model_dump_json()

    loaded = ModelProvider.load("canary-provider")
    assert isinstance(loaded, ModelProvider)
    assert loaded.api_key is not None
    assert loaded.api_key.get_secret_value() == CANARY
    assert str(loaded.base_url) == "http://127.0.0.1:8080/v1"


def test_generic_provider_without_base_url_names_the_field_and_fix() -> None:
    with pytest.raises(ValidationError) as caught:
        ModelProvider(kind=ProviderKind.GENERIC, api_key=SecretStr(CANARY))
    message = str(caught.value)
    assert "base_url is required when kind is 'generic'" in message
    assert "http://127.0.0.1:8080/v1" in message
    assert CANARY not in message


@pytest.mark.parametrize(
    ("field", "value"),
    [("request_timeout_seconds", 0), ("max_concurrent_requests", 0), ("base_url", "not a url")],
)
def test_invalid_fields_are_rejected_by_name(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        ModelProvider.model_validate({"kind": "openai", field: value})
    assert field in str(caught.value)


def test_hosted_provider_may_use_its_default_endpoint() -> None:
    provider = ModelProvider(kind=ProviderKind.OPENAI, api_key=SecretStr(CANARY))
    assert provider.base_url is None


def test_saved_agent_keeps_its_providers_key_secret(prefect_api: str) -> None:
    agent = Agent(
        instruction="x",
        model="generic.smollm2",
        provider=ModelProvider(base_url="http://127.0.0.1:8080/v1", api_key=SecretStr(CANARY)),
        mcp_servers=[
            McpServer(
                name="search",
                command="search-mcp",
                env={"REGION": "eu"},
                secret_env={"TOKEN": "search-token"},
            )
        ],
        history=HistoryPolicy(strategy="summarize", max_context_tokens=2048),
    )
    agent.save("canary-agent", overwrite=True)
    document = httpx.get(
        f"{prefect_api}/block_types/slug/aiorch-agent/block_documents/name/canary-agent",
        params={"include_secrets": "false"},
        timeout=10,
    )
    assert document.status_code == 200, document.text
    assert CANARY not in document.text

    loaded = cast(Agent, Agent.load("canary-agent"))
    assert loaded.provider is not None
    assert loaded.provider.api_key is not None
    assert loaded.provider.api_key.get_secret_value() == CANARY
    assert loaded.mcp_servers[0].secret_env == {"TOKEN": "search-token"}
    assert loaded.history.strategy == "summarize"


@pytest.mark.parametrize(
    ("block", "fields", "message"),
    [
        (Agent, {"temprature": 0.2}, "unknown field 'temprature'; did you mean 'temperature'?"),
        (Agent, {"max_token": 9}, "unknown field 'max_token'; did you mean 'max_tokens'?"),
        (Agent, {"modle": "x"}, "unknown field 'modle'; did you mean 'model'?"),
        (ModelProvider, {"base_ulr": "http://h/v1"}, "did you mean 'base_url'?"),
        (DaggerEngine, {"cli_pth": "dagger"}, "did you mean 'cli_path'?"),
        (Agent, {"instruction": "  \n"}, "instruction is only whitespace"),
    ],
)
def test_block_typos_are_rejected_with_a_suggestion(
    block: type[Block], fields: dict[str, object], message: str
) -> None:
    required = {"instruction": "x", "model": "passthrough"} if block is Agent else {}
    with pytest.raises(ValidationError, match=re.escape(message)):
        block.model_validate({**required, **fields})


def test_a_document_saved_by_an_older_block_version_still_loads(prefect_api: str) -> None:
    Agent(instruction="x", model="passthrough").save("older-agent", overwrite=True)
    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name("older-agent", "aiorch-agent")
        # A field this version no longer has, as an older version of the block saved it.
        client.update_block_document(
            document.id,
            BlockDocumentUpdate(data={**document.data, "retired_option": True}),
        )
    loaded = Agent.load("older-agent")
    assert isinstance(loaded, Agent)
    assert loaded.instruction == "x"
    with pytest.raises(ValidationError, match="unknown field 'retired_option'"):
        Agent.model_validate({**document.data, "retired_option": True})


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "generic", "api_key": CANARY},  # no base_url: the model validator fails
        {"kind": "generic", "base_url": CANARY, "api_key": CANARY},
        {"kind": CANARY, "api_key": CANARY},
        {"kind": "openai", "api_key": CANARY, "request_timeout_seconds": CANARY},
    ],
)
def test_block_validation_errors_never_echo_their_input(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as caught:
        ModelProvider.model_validate(fields)
    assert CANARY not in str(caught.value)
    assert CANARY not in repr(caught.value)
