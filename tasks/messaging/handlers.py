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

import json
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from aiorch.agent_blocks import Agent
from aiorch.tasks.agents.task import arun_agent
from aiorch.tasks.messaging.bus import Handler
from aiorch.tasks.messaging.envelope import DataPart, Envelope, FilePart, TextPart

Reply = list[TextPart | DataPart | FilePart] | None


def as_task(handler: Handler) -> Handler:
    """``handler``, each call a Prefect task run named after the message it handles."""

    @task(name="handle-message", cache_policy=NO_CACHE, persist_result=False)
    async def handle_message(message: Envelope) -> Reply:
        parts = await handler(message)
        return None if parts is None else list(parts)

    async def run(message: Envelope) -> Reply:
        name = f"{message.recipient} <- {message.sender} ({message.kind})"
        result: Reply = await handle_message.with_options(task_run_name=name)(message)
        return result

    return run


def prompt_of(message: Envelope) -> str:
    """The message's parts as one prompt: text as is, data as JSON, files by name or URL."""
    lines = []
    for part in message.parts:
        if isinstance(part, TextPart):
            lines.append(part.text)
        elif isinstance(part, DataPart):
            lines.append(json.dumps(part.data, sort_keys=True))
        else:
            lines.append(f"[file {part.filename or part.url or 'attached'}]")
    return "\n".join(lines)


def agent_handler(agent: Agent | str, **options: Any) -> Handler:
    """A handler that answers each message with ``agent`` (a block or a saved one's name).

    ``options`` go to the agent call (``cache_scope``, ``tenant``, ``overrides``, ...).
    """

    async def answer(message: Envelope) -> Reply:
        result = await arun_agent(agent, prompt_of(message), **options)
        parts: list[TextPart | DataPart | FilePart] = [TextPart(text=result.text)]
        if result.output is not None:
            output = result.output
            data = output.model_dump(mode="json") if hasattr(output, "model_dump") else output
            parts.append(DataPart(data=data))
        return parts

    return answer
