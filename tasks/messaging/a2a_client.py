"""A remote A2A agent as a recipient on the bus.

:func:`a2a_handler` forwards each message to an A2A agent with the official
``a2a-sdk`` client (its card read from the well-known path, JSON-RPC ``message/send``)
and returns the agent's answer: the reply message, or a completed task's status message
and artifacts. A failed, rejected or cancelled task raises; when the remote agent is an
aiorch one, its problem document comes back as the original error class.

Example:
    ```python
    from aiorch.tasks.messaging.a2a_client import a2a_handler
    from aiorch.tasks.messaging.bus import MessageBus
    from aiorch.tasks.messaging.store import MessageStore

    bus = MessageBus(MessageStore.default())
    bus.register("agent:translator", a2a_handler("http://translator.example:8700/"))
    ```
"""

from __future__ import annotations

import httpx
from a2a.client import ClientConfig, ClientFactory
from a2a.types import Message, SendMessageRequest, Task, TaskState

from aiorch.tasks.messaging.a2a import envelope_from_a2a, envelope_to_a2a
from aiorch.tasks.messaging.bus import Handler
from aiorch.tasks.messaging.envelope import Address, DataPart, Envelope, FilePart, TextPart
from aiorch.tasks.messaging.errors import HandlerError, remote_error

Parts = list[TextPart | DataPart | FilePart]
DEFAULT_TIMEOUT_SECONDS = 120.0


def _answer(task: Task, asker: Address) -> Parts:
    parts: Parts = []
    if task.status.HasField("message"):
        parts += envelope_from_a2a(task.status.message, asker).parts
    for artifact in task.artifacts:
        parts += envelope_from_a2a(
            Message(message_id=artifact.artifact_id, parts=artifact.parts)
        ).parts
    return parts


def _raise_for(task: Task, url: str, asker: Address) -> None:
    state = TaskState.Name(task.status.state)
    if task.status.state == TaskState.TASK_STATE_COMPLETED:
        return
    parts = _answer(task, asker)
    problem = next(
        (p.data for p in parts if isinstance(p, DataPart) and isinstance(p.data, dict)), None
    )
    if problem is not None and "type" in problem:
        raise remote_error(dict(problem))
    raise HandlerError(
        f"the A2A agent at {url} ended task {task.id} in {state}",
        {"type": "urn:aiorch:problem:handler-error", "title": state, "status": 502},
    )


def a2a_handler(url: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> Handler:
    """A handler answering each message through the A2A agent at ``url``."""

    async def forward(message: Envelope) -> Parts:
        async with httpx.AsyncClient(timeout=timeout) as http:
            client = await ClientFactory(
                ClientConfig(httpx_client=http, streaming=False)
            ).create_from_url(url)
            answer: Parts = []
            async for response in client.send_message(
                SendMessageRequest(message=envelope_to_a2a(message))
            ):
                if response.HasField("message"):
                    answer = envelope_from_a2a(response.message, message.sender).parts
                elif response.HasField("task"):
                    _raise_for(response.task, url, message.sender)
                    answer = _answer(response.task, message.sender)
            return answer

    return forward
