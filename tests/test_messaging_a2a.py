"""A2A both ways on loopback: an aiorch agent behind the SDK's client, an SDK agent on the bus."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import override
from uuid import uuid4

import anyio
import httpx
import pytest
import uvicorn
from a2a.client import ClientConfig, ClientFactory
from a2a.helpers.proto_helpers import new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore
from a2a.types import Message, Part, Role, SendMessageRequest, StreamResponse, TaskState
from starlette.applications import Starlette
from starlette.types import ASGIApp

from aiorch.core.errors import ConfigurationError
from aiorch.core.services import free_port
from aiorch.tasks.messaging.a2a_client import a2a_handler
from aiorch.tasks.messaging.a2a_server import a2a_application, agent_card
from aiorch.tasks.messaging.bus import MessageBus
from aiorch.tasks.messaging.envelope import AgentAddress, Envelope, TextPart, parse_address
from aiorch.tasks.messaging.store import MessageStore


@contextmanager
def serving(app: ASGIApp, port: int) -> Iterator[str]:
    """``app`` under uvicorn on 127.0.0.1:``port`` in a thread; its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "uvicorn exited"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


async def _shout(message: Envelope) -> list[TextPart]:
    text = message.text()
    if text == "mars":
        raise ConfigurationError("region: 'mars' is not a region; use eu or us")
    return [TextPart(text=text.upper())]


async def _ask_with_the_sdk(url: str, text: str) -> list[StreamResponse]:
    async with httpx.AsyncClient(timeout=30) as http:
        client = await ClientFactory(
            ClientConfig(httpx_client=http, streaming=False)
        ).create_from_url(url)
        message = Message(role=Role.ROLE_USER, message_id=uuid4().hex, parts=[Part(text=text)])
        return [
            response async for response in client.send_message(SendMessageRequest(message=message))
        ]


def test_an_aiorch_handler_answers_the_sdks_client_with_task_states() -> None:
    port = free_port()
    app = a2a_application(
        _shout, address="agent:shouter", description="Shouts.", url=f"http://127.0.0.1:{port}/"
    )
    with serving(app, port) as url:
        card = httpx.get(f"{url}.well-known/agent-card.json", timeout=10).json()
        answered = anyio.run(_ask_with_the_sdk, url, "hello")
        failed = anyio.run(_ask_with_the_sdk, url, "mars")
    assert card["name"] == "agent:shouter"
    assert card["skills"][0]["id"] == "shouter"
    (done,) = answered
    assert done.task.status.state == TaskState.TASK_STATE_COMPLETED
    assert [part.text for part in done.task.status.message.parts] == ["HELLO"]
    assert done.task.status.message.role == Role.ROLE_AGENT
    (refused,) = failed
    assert refused.task.status.state == TaskState.TASK_STATE_FAILED
    problem = refused.task.status.message.parts[0].data
    assert "'mars' is not a region" in problem.struct_value["detail"]


class _Reverser(AgentExecutor):
    """An agent written with the SDK alone: it answers with the text reversed."""

    @override
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.message is not None
        text = "".join(part.text for part in context.message.parts)
        await event_queue.enqueue_event(new_text_message(text[::-1], role=Role.ROLE_AGENT))

    @override
    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


def test_a_remote_a2a_agent_is_a_recipient_on_the_bus_and_errors_come_back_typed(
    scratch_dir: Path,
) -> None:
    sdk_port, aiorch_port = free_port(), free_port()
    card = agent_card(AgentAddress(type="reverser"), "Reverses.", f"http://127.0.0.1:{sdk_port}/")
    handler = DefaultRequestHandler(_Reverser(), InMemoryTaskStore(), card)
    sdk_app = Starlette(
        routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(handler, rpc_url="/")]
    )
    aiorch_app = a2a_application(
        _shout,
        address="agent:shouter",
        description="Shouts.",
        url=f"http://127.0.0.1:{aiorch_port}/",
    )
    bus = MessageBus(MessageStore(scratch_dir / "messages.sqlite"))

    def ask(recipient: str, text: str) -> Envelope:
        return Envelope(
            sender=parse_address("agent:me"),
            recipient=parse_address(recipient),
            kind="request",
            parts=[TextPart(text=text)],
        )

    with serving(sdk_app, sdk_port) as sdk_url, serving(aiorch_app, aiorch_port) as aiorch_url:
        bus.register("agent:reverser", a2a_handler(sdk_url))
        bus.register("agent:remote-shouter", a2a_handler(aiorch_url))

        async def main() -> tuple[Envelope, Envelope]:
            async with bus.serving():
                reversed_ = await bus.request(ask("agent:reverser", "stressed"), 30)
                shouted = await bus.request(ask("agent:remote-shouter", "hi"), 30)
                with pytest.raises(ConfigurationError, match="'mars' is not a region"):
                    await bus.request(ask("agent:remote-shouter", "mars"), 30)
            return reversed_, shouted

        reversed_, shouted = anyio.run(main)
    assert reversed_.text() == "desserts"
    assert shouted.text() == "HI"
