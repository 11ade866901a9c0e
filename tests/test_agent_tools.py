"""MCP tools: a real stdio server; each tool call is a task a retried flow replays."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect import flow
from prefect.blocks.system import Secret

from aiorch.agent_blocks import Agent, McpServer
from aiorch.tasks.agents.errors import ToolCallError
from aiorch.tasks.agents.task import AgentResult, run_agent
from aiorch.tasks.agents.tools import close_mcp_connections
from tests.agent_flows import call_in_flow

SERVER = Path(__file__).parent / "mcp" / "calculator.py"
CALL_ADD = '***CALL_TOOL calc__add {"a": 2, "b": 3}'


@pytest.fixture
def tool_log(scratch_dir: Path) -> Iterator[Path]:
    """Where the calculator server records each real call; servers closed afterwards."""
    yield scratch_dir / "tool-calls.log"
    close_mcp_connections()


def _calculator(log: Path) -> McpServer:
    return McpServer(
        name="calc",
        command=sys.executable,
        args=[str(SERVER)],
        env={"AIORCH_TEST_TOOL_LOG": str(log)},
    )


def test_the_model_calls_a_tool_and_gets_its_result(prefect_api: str, tool_log: Path) -> None:
    agent = Agent(instruction="x", model="passthrough", mcp_servers=[_calculator(tool_log)])
    result = call_in_flow(agent, CALL_ADD)
    assert (result.requests, result.tool_calls) == (2, 1)
    messages = json.loads(result.history_json)["messages"]
    tool_results = [message for message in messages if message.get("tool_results")]
    assert len(tool_results) == 1
    assert "5" in json.dumps(tool_results[0]["tool_results"])
    assert tool_log.read_text().splitlines() == ["add 2 3"]


@pytest.mark.logs_errors("RuntimeError")
def test_a_retried_flow_replays_tool_calls(prefect_api: str, tool_log: Path) -> None:
    agent = Agent(instruction="x", model="passthrough", mcp_servers=[_calculator(tool_log)])
    attempts: list[AgentResult] = []

    @flow(name="agent-tools-retry", retries=1)
    def flaky() -> None:
        attempts.append(run_agent(agent, CALL_ADD))
        if len(attempts) == 1:
            raise RuntimeError("fails after the tool ran")

    flaky()
    assert [result.cache_hit for result in attempts] == [False, True]
    assert tool_log.read_text().splitlines() == ["add 2 3"]  # the tool ran once


@pytest.mark.logs_errors("ToolCallError")
def test_a_server_that_cannot_start_fails_as_a_retryable_tool_error(
    prefect_api: str, tool_log: Path
) -> None:
    broken = McpServer(name="calc", command=sys.executable, args=["-c", "raise SystemExit(3)"])
    agent = Agent(instruction="x", model="passthrough", mcp_servers=[broken])
    with pytest.raises(ToolCallError) as caught:
        call_in_flow(agent, CALL_ADD)
    assert caught.value.retryable is True
    assert "MCP server 'calc' failed" in str(caught.value)


@pytest.mark.logs_errors("ConfigurationError")
def test_tools_offered_to_a_model_that_cannot_call_them_fail_before_any_call(
    prefect_api: str, tool_log: Path, scratch_dir: Path
) -> None:
    from pydantic import SecretStr

    from aiorch.agent_blocks import ModelProvider
    from aiorch.core.services import free_port, running_service
    from aiorch.tasks.agents.capabilities import probe_capabilities
    from aiorch.tasks.agents.local_model import local_model_installed, model_file
    from tests.services import require_service

    require_service("local model", local_model_installed(), "the 'model' extra is missing")
    # llama.cpp's own server, without aiorch's chat handler: its chat template ignores
    # tools, so a probe finds the endpoint cannot call them.
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model_file()),
        "--model_alias",
        "plain",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_threads",
        "1",
    ]
    base_url = f"http://127.0.0.1:{port}/v1"
    with running_service(argv, {}, scratch_dir / "plain.log", f"{base_url}/models", 120):
        provider = ModelProvider(kind="generic", base_url=base_url, api_key=SecretStr("local"))
        assert probe_capabilities("generic.plain", provider).tools is False
        agent = Agent(
            instruction="x",
            model="generic.plain",
            provider=provider,
            mcp_servers=[_calculator(tool_log)],
        )
        with pytest.raises(
            ValueError, match=r"mcp_servers: model 'generic\.plain' cannot call tools"
        ):
            call_in_flow(agent, "add 2 and 3")
    assert not tool_log.exists()


@pytest.mark.logs_errors("ConfigurationError")
def test_secret_environment_comes_from_secret_blocks_and_never_shows(
    prefect_api: str, tool_log: Path
) -> None:
    canary = "mcp-secret-canary-51f0"
    Secret(value=canary).save("calc-token", overwrite=True)
    server = McpServer(
        name="calc",
        command=sys.executable,
        args=[str(SERVER)],
        env={"AIORCH_TEST_TOOL_LOG": str(tool_log)},
        secret_env={"AIORCH_TEST_TOOL_SECRET": "calc-token"},
    )
    result = call_in_flow(
        Agent(instruction="x", model="passthrough", mcp_servers=[server]), CALL_ADD
    )
    # The server saw the secret (it writes it into its log); the result never does.
    assert tool_log.read_text().splitlines() == [f"add 2 3 {canary}"]
    assert canary not in result.model_dump_json()

    missing = server.model_copy(update={"secret_env": {"TOKEN": "no-such-secret"}})
    with pytest.raises(
        ValueError, match=r"secret_env\['TOKEN'\]: Secret block 'no-such-secret' does not exist"
    ):
        call_in_flow(Agent(instruction="x", model="passthrough", mcp_servers=[missing]), CALL_ADD)


def test_a_server_needs_exactly_one_transport() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="needs exactly one of command"):
        McpServer(name="x")
    with pytest.raises(ValidationError, match="needs exactly one of command"):
        McpServer(name="x", command="a", url="http://b")


def test_a_tool_the_role_does_not_grant_is_refused_to_the_model_and_never_runs(
    prefect_api: str, tool_log: Path
) -> None:
    from datetime import UTC, datetime

    from aiorch.core.access import TOOL_DENIED_EVENT, AccessRole
    from aiorch.testing.prefect_server import poll_events

    since = datetime.now(UTC)
    role = AccessRole(name="no-arithmetic", tools=["calc__refuse"])
    agent = Agent(
        instruction="x", model="passthrough", mcp_servers=[_calculator(tool_log)], role=role
    )
    result = call_in_flow(agent, CALL_ADD)
    messages = json.loads(result.history_json)["messages"]
    answered = json.dumps([m["tool_results"] for m in messages if m.get("tool_results")])
    assert (
        "permission denied: the role 'no-arithmetic' does not grant the tool 'calc__add'"
        in answered
    )
    assert '"isError": true' in answered
    assert not tool_log.exists()  # the server never saw the call
    events = poll_events(
        prefect_api, "aiorch.access-role.no-arithmetic", 1, names=[TOOL_DENIED_EVENT], since=since
    )
    assert [event["payload"] for event in events] == [
        {"role": "no-arithmetic", "tool": "calc__add"}
    ]


def test_only_the_tools_a_role_grants_are_offered(prefect_api: str, tool_log: Path) -> None:
    import anyio

    from aiorch.core.access import AccessRole
    from aiorch.tasks.agents.tools import granted_tools, offered_tools

    tools = anyio.run(offered_tools, [_calculator(tool_log)])
    role = AccessRole(name="adder", tools=["calc__add"])
    assert sorted(tool.name for tool in tools) == ["calc__add", "calc__refuse"]
    assert [tool.name for tool in granted_tools(role, tools)] == ["calc__add"]
    assert granted_tools(None, tools) == tools
    assert granted_tools(AccessRole(name="all-calc", tools=["calc__*"]), tools) == tools


@pytest.mark.logs_errors("PermissionDenied")
def test_a_server_secret_the_agent_role_lacks_stops_the_call_before_the_server_starts(
    prefect_api: str, tool_log: Path
) -> None:
    from aiorch.core.access import AccessRole
    from aiorch.core.errors import PermissionDenied

    Secret(value="withheld-mcp-canary-33c1").save("calc-withheld", overwrite=True)
    server = _calculator(tool_log).model_copy(
        update={"secret_env": {"AIORCH_TEST_TOOL_SECRET": "calc-withheld"}}
    )
    agent = Agent(
        instruction="x",
        model="passthrough",
        mcp_servers=[server],
        role=AccessRole(name="calculator", tools=["calc__*"]),
    )
    with pytest.raises(
        PermissionDenied,
        match=r"secret_env\['AIORCH_TEST_TOOL_SECRET'\] uses the secret 'calc-withheld', "
        r"which the role 'calculator' does not grant",
    ):
        call_in_flow(agent, CALL_ADD)
    assert not tool_log.exists()
