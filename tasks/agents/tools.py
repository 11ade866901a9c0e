"""MCP tools for agents: one open session per server, each tool call its own task.

The agent's MCP servers are connected once per process, on the agent runtime's event
loop, and reused by every call with the same server configuration (a stdio server is
a process; starting it per call would cost more than most tool calls). aiorch runs the
tool loop itself: the model's tool calls come back from a model request, each runs as
a ``tool-call`` task stored under a key of the server, the tool, its arguments and the
model request that asked for it, and the results go back to the model in the next
request. A retried flow therefore replays completed tool calls as well as completed
model requests.

Example:
    ```python
    from aiorch.agent_blocks import Agent, McpServer

    Agent(
        instruction="Use the calculator for arithmetic.",
        model="openai.gpt-4.1-mini",
        mcp_servers=[McpServer(name="calc", command="python", args=["calc_server.py"])],
    )
    ```
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent, Tool
from prefect import task
from prefect.events import emit_event
from prefect.logging import get_logger
from prefect.runtime import flow_run

from aiorch.agent_blocks.agent import McpServer
from aiorch.core.access import TOOL_DENIED_EVENT, AccessRole
from aiorch.core.events import related_flow_run
from aiorch.core.redaction import mask
from aiorch.core.secrets import parse_secret_ref
from aiorch.tasks.agents.errors import ToolCallError
from aiorch.tasks.agents.runtime import AgentRuntime
from aiorch.tasks.durable import PrecomputedKey
from aiorch.tasks.secrets import aresolve_secret

TOOL_SEPARATOR = "__"
CONNECT_TIMEOUT_SECONDS = 60.0


def server_identity(server: McpServer) -> str:
    """A stable id of a server's configuration (secret block names, never values)."""
    described = server.model_dump(mode="json")
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


async def server_environment(server: McpServer) -> dict[str, str]:
    """The server's environment with its ``secret_env`` read now (blocks, variables, files).

    Raises:
        ConfigurationError: a named secret cannot be read (naming the variable and place).
    """
    environment = dict(server.env)
    for variable, place in server.secret_env.items():
        environment[variable] = await aresolve_secret(
            parse_secret_ref(place), f"mcp_servers[{server.name!r}].secret_env[{variable!r}]"
        )
    return environment


@dataclass
class _Session:
    """One server's session: ready once connected, closed when ``stop`` is set."""

    ready: asyncio.Future[tuple[ClientSession, list[Tool]]]
    stop: asyncio.Event
    owner: asyncio.Task[None]
    environment: bytes


class McpConnections:
    """Open MCP sessions on the agent runtime's loop, one per server configuration.

    Each session is owned by a task on the runtime loop that stays inside the
    transport's context until the session stops, because MCP transports must be entered
    and left by the same task. A server whose secrets changed since it started (a
    rotated secret) is stopped and started again with the new values.
    """

    def __init__(self) -> None:
        self._sessions: dict[str, _Session] = {}
        # Owners of replaced sessions, held until they have stopped (the loop keeps only
        # weak references to tasks).
        self._retiring: set[asyncio.Task[None]] = set()
        # Environments are compared by a keyed digest: values never sit here in clear.
        self._key = secrets.token_bytes(16)

    def _digest(self, environment: dict[str, str]) -> bytes:
        text = json.dumps(environment, sort_keys=True).encode()
        return hmac.new(self._key, text, hashlib.sha256).digest()

    async def session(
        self, server: McpServer, environment: dict[str, str]
    ) -> tuple[ClientSession, list[Tool]]:
        """The server's open session and its tools, connecting on first use.

        ``environment`` is :func:`server_environment` (read in the calling task, where
        Prefect's context can load Secret blocks).
        """
        identity = server_identity(server)
        digest = self._digest(environment)
        current = self._sessions.get(identity)
        failed = (
            current is not None and current.ready.done() and current.ready.exception() is not None
        )
        if current is None or failed or current.environment != digest:
            if current is not None:
                current.stop.set()
                self._retiring.add(current.owner)
                current.owner.add_done_callback(self._retiring.discard)
            ready: asyncio.Future[tuple[ClientSession, list[Tool]]] = (
                asyncio.get_running_loop().create_future()
            )
            stop = asyncio.Event()
            owner = asyncio.create_task(self._own(server, environment, ready, stop))
            current = self._sessions[identity] = _Session(ready, stop, owner, digest)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                return await asyncio.shield(current.ready)
        except TimeoutError:
            raise ToolCallError(
                f"MCP server {server.name!r} did not start within {CONNECT_TIMEOUT_SECONDS}s"
            ) from None

    async def _own(
        self,
        server: McpServer,
        environment: dict[str, str],
        ready: asyncio.Future[tuple[ClientSession, list[Tool]]],
        stop: asyncio.Event,
    ) -> None:
        try:
            async with AsyncExitStack() as stack:
                if server.command is not None:
                    parameters = StdioServerParameters(
                        command=server.command,
                        args=server.args,
                        env=environment or None,
                    )
                    streams = await stack.enter_async_context(stdio_client(parameters))
                else:
                    assert server.url is not None
                    streams = await stack.enter_async_context(streamable_http_client(server.url))
                session = await stack.enter_async_context(ClientSession(streams[0], streams[1]))
                await session.initialize()
                listed = await session.list_tools()
                ready.set_result((session, list(listed.tools)))
                await stop.wait()
        except Exception as error:  # a server that fails to start must fail the call
            if not ready.done():
                reason = mask(
                    str(error) or type(error).__name__, _secret_values(server, environment)
                )
                ready.set_exception(ToolCallError(f"MCP server {server.name!r} failed: {reason}"))

    async def close(self) -> None:
        """Close every session (and stop stdio servers)."""
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.stop.set()
        owners = [session.owner for session in sessions] + list(self._retiring)
        if owners:
            await asyncio.gather(*owners, return_exceptions=True)


def _secret_values(server: McpServer, environment: dict[str, str]) -> list[str]:
    return [environment[variable] for variable in server.secret_env if variable in environment]


def connections(runtime: AgentRuntime) -> McpConnections:
    """The runtime's MCP connections (created on first use, closed with the runtime)."""
    return runtime.resource("mcp-connections", McpConnections, McpConnections.close)


def close_mcp_connections() -> None:
    """Close the process's MCP sessions now (they reopen on next use).

    Stdio servers otherwise run until the process exits; call this, or use it as a
    flow's ``on_completion``/``on_failure`` hook through a small wrapper, to stop them
    earlier.
    """
    runtime = AgentRuntime.shared()

    async def on_runtime() -> None:
        await connections(runtime).close()

    runtime.call(on_runtime)


async def offered_tools(servers: list[McpServer]) -> list[Tool]:
    """The tools of ``servers`` as the model sees them: named ``<server>__<tool>``."""
    if not servers:
        return []
    runtime = AgentRuntime.shared()
    environments = [await server_environment(server) for server in servers]

    async def on_runtime() -> list[Tool]:
        pool = connections(runtime)
        tools: list[Tool] = []
        for server, environment in zip(servers, environments, strict=True):
            _, listed = await pool.session(server, environment)
            tools.extend(
                tool.model_copy(update={"name": f"{server.name}{TOOL_SEPARATOR}{tool.name}"})
                for tool in listed
            )
        return tools

    return await runtime.acall(on_runtime)


def check_secret_access(role: AccessRole | None, servers: list[McpServer]) -> None:
    """Refuse, before any server starts, secrets of the agent's servers its role lacks.

    Raises:
        PermissionDenied: a server's ``secret_env`` names a Secret block the role does
            not grant (naming the server, the variable, the block and the role).
    """
    if role is None:
        return
    for server in servers:
        for variable, place in server.secret_env.items():
            field = f"mcp_servers[{server.name!r}].secret_env[{variable!r}]"
            role.require_secret(parse_secret_ref(place).name, field, "server")


def granted_tools(role: AccessRole | None, tools: list[Tool]) -> list[Tool]:
    """The tools ``role`` grants (all of them without a role): what the model is offered."""
    return tools if role is None else [tool for tool in tools if role.allows_tool(tool.name)]


def refuse_tool(role: AccessRole, name: str) -> CallToolResult:
    """The error the model reads for a tool its role does not grant; logged and evented.

    The tool never runs. The audit names the role and the tool, never the arguments (a
    model may have put anything there).
    """
    get_logger("aiorch.access").warning(
        "tool call refused: role %r does not grant the tool %r", role.name, name
    )
    emit_event(
        event=TOOL_DENIED_EVENT,
        resource={"prefect.resource.id": f"aiorch.access-role.{role.name}", "aiorch.tool": name},
        related=related_flow_run(flow_run.get_id()),
        payload={"role": role.name, "tool": name},
    )
    text = (
        f"permission denied: the role {role.name!r} does not grant the tool {name!r}; "
        "answer without it"
    )
    return CallToolResult(content=[TextContent(type="text", text=text)], isError=True)


def resolve_tool(servers: list[McpServer], offered_name: str) -> tuple[McpServer, str] | None:
    """The server and the server's own tool name behind an offered tool name."""
    server_name, separator, tool = offered_name.partition(TOOL_SEPARATOR)
    if not separator:
        return None
    for server in servers:
        if server.name == server_name:
            return server, tool
    return None


def tool_call_key(
    request_key: str | None, call_id: str, server: McpServer, tool: str
) -> str | None:
    """The key a tool call is stored under: the request that asked for it, and the call.

    The request key already covers the conversation and scope; the model's own call id
    tells apart several calls of one reply.
    """
    if request_key is None:
        return None
    payload = f"{request_key}|{call_id}|{server_identity(server)}|{tool}"
    return f"tool-call-{hashlib.sha256(payload.encode()).hexdigest()}"


@task(name="tool-call", persist_result=True, cache_policy=PrecomputedKey())
async def tool_call(
    server: McpServer, tool: str, arguments: dict[str, Any], cache_key: str | None
) -> CallToolResult:
    """Call one MCP tool; a tool's own failure comes back as an error result for the model.

    Raises:
        ToolCallError: the server cannot be reached or the call timed out (retryable).
    """
    runtime = AgentRuntime.shared()
    environment = await server_environment(server)

    async def on_runtime() -> CallToolResult:
        session, _ = await connections(runtime).session(server, environment)
        try:
            async with asyncio.timeout(server.read_timeout_seconds):
                return await session.call_tool(tool, arguments)
        except TimeoutError:
            raise ToolCallError(
                f"tool {server.name}{TOOL_SEPARATOR}{tool} took longer than "
                f"{server.read_timeout_seconds}s"
            ) from None

    return await runtime.acall(on_runtime)
