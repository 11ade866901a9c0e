"""Tools on the bundled local model: real llama.cpp, real SmolLM2, a real MCP server."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aiorch.agent_blocks import Agent, McpServer, ModelProvider
from aiorch.core.access import AccessRole
from aiorch.tasks.agents.tools import close_mcp_connections
from tests.agent_flows import call_in_flow

SERVER = Path(__file__).parent / "mcp" / "calculator.py"
DELETE = {
    "type": "function",
    "function": {
        "name": "files__delete",
        "description": "Delete a file from disk",
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string"}},
            "required": ["path"],
        },
    },
}


@pytest.fixture
def tool_log(scratch_dir: Path) -> Iterator[Path]:
    yield scratch_dir / "tool-calls.log"
    close_mcp_connections()


def _chat(base_url: str, messages: list[dict[str, object]]) -> dict[str, object]:
    response = httpx.post(
        f"{base_url}/chat/completions",
        json={
            "model": "smollm2",
            "messages": messages,
            "tools": [DELETE],
            "temperature": 0,
            "max_tokens": 48,
        },
        timeout=120,
    )
    response.raise_for_status()
    message: dict[str, object] = response.json()["choices"][0]["message"]
    return message


def test_the_local_model_calls_the_tool_its_role_grants(
    prefect_api: str, local_model: str, tool_log: Path
) -> None:
    calculator = McpServer(
        name="calc",
        command=sys.executable,
        args=[str(SERVER)],
        env={"AIORCH_TEST_TOOL_LOG": str(tool_log)},
    )
    agent = Agent(
        instruction="You add numbers with the add tool, then answer with the sum.",
        model="generic.smollm2",
        provider=ModelProvider(kind="local"),
        mcp_servers=[calculator],
        role=AccessRole(name="adder", tools=["calc__add"]),
        temperature=0,
        max_tokens=48,
        max_tool_rounds=3,
    )
    result = call_in_flow(agent, "What is 2 + 3? Use the tool.")
    # The model chose the tool and its arguments itself; the real server ran it once.
    assert tool_log.read_text().splitlines() == ["add 2 3"]
    assert (result.requests, result.tool_calls) == (2, 1)
    assert result.stop_reason == "endTurn"
    assert result.text  # after the result, the model answered in words
    offered = json.dumps(json.loads(result.history_json))
    assert "calc__refuse" not in offered  # the tool the role lacks was never offered


def test_the_local_model_reads_a_refusal_and_answers_instead_of_retrying(
    local_model: str,
) -> None:
    asked: list[dict[str, object]] = [
        {"role": "system", "content": "You are an assistant with tools."},
        {"role": "user", "content": "Delete the file /tmp/notes.txt."},
    ]
    first = _chat(local_model, asked)
    calls = first["tool_calls"]
    assert isinstance(calls, list)
    assert len(calls) == 1
    call = calls[0]
    assert call["function"]["name"] == "files__delete"
    assert json.loads(call["function"]["arguments"]) == {"path": "/tmp/notes.txt"}

    refusal = "permission denied: the role 'reader' does not grant the tool 'files__delete'"
    second = _chat(
        local_model,
        [
            *asked,
            {"role": "assistant", "tool_calls": calls},
            {"role": "tool", "tool_call_id": call["id"], "content": refusal},
        ],
    )
    assert not second.get("tool_calls")
    answer = str(second["content"]).lower()
    assert "not grant" in answer or "denied" in answer


def test_the_server_is_started_with_the_handlers_own_name() -> None:
    # local_model.py repeats the name (it must not import llama_cpp); they must agree.
    from aiorch.tasks.agents import local_model, local_model_tools

    assert local_model.TOOL_CHAT_FORMAT == local_model_tools.TOOL_CHAT_FORMAT
