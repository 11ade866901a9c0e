"""Handlers as Prefect task runs, and an ``Agent`` block as a handler in one line.

:func:`as_task` runs a handler as a Prefect task run named after the message
(``agent:summariser <- agent:coordinator (request)``), so every handled message shows in
the Prefect UI, with its logs, under the flow run that serves the bus.
:func:`agent_handler` turns an ``Agent`` block into a handler: the message's parts
become the prompt (text as is, data as JSON), the existing durable agent call answers it
(cache, fallbacks, usage accounting), and the reply carries the agent's text (and its
structured output, when the agent has an output schema).

Example:
    ```python
    from aiorch.agent_blocks import Agent
    from aiorch.tasks.messaging.handlers import agent_handler, as_task

    handler = as_task(agent_handler(Agent(instruction="Summarise.", model="passthrough")))
    ```
"""

from __future__ import annotations

import hashlib
from typing import Any

from prefect import task

from aiorch.agent_blocks import Agent
from aiorch.tasks.agents.task import arun_agent
from aiorch.tasks.durable import PrecomputedKey
from aiorch.tasks.message_records import MessageRecord, summary
from aiorch.tasks.messaging.bus import Handler, handling_agent
from aiorch.tasks.messaging.envelope import DataPart, Envelope, FilePart, TextPart

Reply = list[TextPart | DataPart | FilePart] | None


class HandledMessage(MessageRecord):
    """A handle-message task run's result: the record, and the reply's parts."""

    reply: list[TextPart | DataPart | FilePart] | None = None


def as_task(handler: Handler) -> Handler:
    """``handler``, each call a Prefect task run named after the message it handles.

    The task run's result is a :class:`~aiorch.tasks.message_records.MessageRecord`, from
    which the run report draws the conversation.
    """

    # Keyed by the message and the agent handling it: a message handled again (its ack
    # was lost with the process) replays the stored reply instead of running again, and
    # the stored record is what the run report reads.
    @task(name="handle-message", cache_policy=PrecomputedKey(), persist_result=True)
    async def handle_message(message: Envelope, cache_key: str) -> HandledMessage:
        parts = await handler(message)
        reply = None if parts is None else list(parts)
        return HandledMessage(
            id=message.id,
            sender=str(message.sender),
            recipient=str(message.recipient),
            handler=str(handling_agent() or message.recipient),
            kind=message.kind,
            priority=message.priority,
            created_at=message.created_at,
            content=summary(message.text()),
            answer=summary(_text_of(reply)) if message.kind == "request" else None,
            reply=reply,
        )

    async def run(message: Envelope) -> Reply:
        name = f"{message.recipient} <- {message.sender} ({message.kind})"
        identity = f"{handling_agent() or message.recipient}\n{message.id}"
        key = f"handle-message-{hashlib.sha256(identity.encode()).hexdigest()}"
        handled: HandledMessage = await handle_message.with_options(task_run_name=name)(
            message, key
        )
        return handled.reply

    return run


def _text_of(parts: Reply) -> str:
    return "\n".join(part.text for part in parts or [] if isinstance(part, TextPart))


def agent_handler(agent: Agent | str, **options: Any) -> Handler:
    """A handler that answers each message with ``agent`` (a block or a saved one's name).

    ``options`` go to the agent call (``cache_scope``, ``tenant``, ``overrides``, ...).
    """

    async def answer(message: Envelope) -> Reply:
        result = await arun_agent(agent, message.text(), **options)
        parts: list[TextPart | DataPart | FilePart] = [TextPart(text=result.text)]
        if result.output is not None:
            output = result.output
            data = output.model_dump(mode="json") if hasattr(output, "model_dump") else output
            parts.append(DataPart(data=data))
        return parts

    return answer
