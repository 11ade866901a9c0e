"""An aiorch handler as an A2A agent: agent card, JSON-RPC ``message/send``, task states.

:func:`a2a_application` serves a handler (an ``Agent`` block through
:func:`~aiorch.tasks.messaging.handlers.agent_handler`, or any bus handler) with the
official ``a2a-sdk`` server: the agent card at ``/.well-known/agent-card.json`` and the
JSON-RPC endpoint at ``/``. Each incoming message becomes a task that goes submitted,
working, then completed with the reply as its status message, or failed with the
handler's RFC 9457 problem document as a data part (an aiorch client raises it again
as its own class). Run it with any ASGI server, e.g. ``uvicorn``.

Example:
    ```python
    from aiorch.agent_blocks import Agent
    from aiorch.tasks.messaging.a2a_server import a2a_application
    from aiorch.tasks.messaging.handlers import agent_handler

    app = a2a_application(
        agent_handler(Agent(instruction="Summarise.", model="passthrough")),
        address="agent:summariser",
        description="Summarises text in one sentence.",
        url="http://127.0.0.1:8700/",
    )
    ```
"""

from __future__ import annotations

from importlib.metadata import version
from typing import override

from a2a.helpers.proto_helpers import new_task_from_user_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill
from a2a.utils.constants import PROTOCOL_VERSION_CURRENT, TransportProtocol
from starlette.applications import Starlette

from aiorch.core.errors import ConfigurationError
from aiorch.tasks.messaging.a2a import HEADER_PREFIX, envelope_from_a2a, envelope_to_a2a
from aiorch.tasks.messaging.bus import Handler
from aiorch.tasks.messaging.envelope import (
    AgentAddress,
    DataPart,
    Envelope,
    FilePart,
    TextPart,
    parse_address,
)
from aiorch.tasks.resilience.problems import problem_from_exception

MODES = ["text/plain", "application/json"]


class HandlerExecutor(AgentExecutor):
    """Runs a bus handler for each A2A message, reporting the task's states."""

    def __init__(self, handler: Handler, address: AgentAddress) -> None:
        self.handler = handler
        self.address = address

    @override
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        if context.message is None:
            return  # nothing asked: the SDK answers the caller itself
        # The task (submitted) first, then its states: the SDK requires that order.
        task = context.current_task or new_task_from_user_message(context.message)
        if context.current_task is None:
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.start_work()
        request = envelope_from_a2a(context.message, recipient=self.address)
        try:
            parts = await self.handler(request)
        except Exception as error:
            problem = problem_from_exception(error).model_dump(mode="json", exclude_none=True)
            failure = _reply(request, [DataPart(data=problem)], self.address)
            await updater.failed(envelope_to_a2a(failure))
            return
        await updater.complete(envelope_to_a2a(_reply(request, list(parts or []), self.address)))

    @override
    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        await TaskUpdater(event_queue, context.task_id or "", context.context_id or "").cancel()


def _reply(
    request: Envelope, parts: list[TextPart | DataPart | FilePart], sender: AgentAddress
) -> Envelope:
    # A new message of ours: the caller's A2A fields (its role, ids) stay with the request.
    headers = {k: v for k, v in request.headers.items() if not k.startswith(HEADER_PREFIX)}
    return request.reply(parts, sender=sender, headers=headers)


def agent_card(address: AgentAddress, description: str, url: str) -> AgentCard:
    """The card describing the agent at ``address``, served from ``url``."""
    return AgentCard(
        name=str(address),
        description=description,
        version=version("aiorch"),
        supported_interfaces=[
            AgentInterface(
                url=url,
                protocol_binding=TransportProtocol.JSONRPC,
                protocol_version=PROTOCOL_VERSION_CURRENT,
            )
        ],
        capabilities=AgentCapabilities(streaming=False),
        default_input_modes=MODES,
        default_output_modes=MODES,
        skills=[
            AgentSkill(
                id=address.type,
                name=address.type,
                description=description,
                tags=["aiorch", address.type],
            )
        ],
    )


def a2a_application(handler: Handler, *, address: str, description: str, url: str) -> Starlette:
    """An ASGI application serving ``handler`` as the A2A agent ``address`` at ``url``.

    Raises:
        ConfigurationError: ``address`` is not an agent's.
    """
    parsed = parse_address(address)
    if not isinstance(parsed, AgentAddress):
        raise ConfigurationError(f"address {address!r}: an A2A server is an agent; agent:NAME")
    card = agent_card(parsed, description, url)
    requests = DefaultRequestHandler(HandlerExecutor(handler, parsed), InMemoryTaskStore(), card)
    return Starlette(
        routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(requests, rpc_url="/")]
    )
