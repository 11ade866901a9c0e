"""Agents on the bus: an Agent block as a handler, each handled message a Prefect task run."""

from __future__ import annotations

import time
from pathlib import Path
from uuid import UUID

import anyio
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.runtime import flow_run

from aiorch.agent_blocks import Agent
from aiorch.tasks.messaging.bus import MessageBus
from aiorch.tasks.messaging.envelope import DataPart, Envelope, TextPart, parse_address
from aiorch.tasks.messaging.handlers import agent_handler, as_task
from aiorch.tasks.messaging.store import MessageStore


def test_an_agent_block_answers_messages_as_prefect_task_runs(
    prefect_api: str, scratch_dir: Path
) -> None:
    store = MessageStore(scratch_dir / "messages.sqlite")
    ids: list[UUID] = []
    echo = Agent(instruction="Repeat the message.", model="passthrough")

    @flow(name="messaging-agents-test")
    async def conversation() -> Envelope:
        ids.append(UUID(flow_run.get_id()))
        bus = MessageBus(store)
        bus.register("agent:echo", as_task(agent_handler(echo)), capabilities=["repeat"])
        async with bus.serving():
            return await bus.request(
                Envelope(
                    sender=parse_address("agent:coordinator"),
                    recipient=parse_address("capability:repeat"),
                    kind="request",
                    parts=[TextPart(text="hello there"), DataPart(data={"n": 1})],
                ),
                timeout=60,
            )

    reply = anyio.run(conversation)
    assert reply.text() == 'hello there\n{"n": 1}'  # the passthrough model echoes
    handled = "capability:repeat <- agent:coordinator (request)"
    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while True:  # task-run states reach the server through events: poll for them
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[ids[0]]))
            )
            names = {run.name: run.state_name for run in runs}
            if names.get(handled) == "Completed" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert names[handled] == "Completed"
    assert any(name.startswith("agent-call") for name in names)
