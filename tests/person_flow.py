"""A flow that drafts with an agent, then asks a person, for the person-in-the-loop tests.

    python -m tests.person_flow serve NAME

serves the flow as deployment ``aiorch-person-test/NAME`` (the suspended-run test needs
a deployment, so that Prefect can start the run again once the person answers).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from prefect import flow

from aiorch.agent_blocks import Agent, ModelProvider
from aiorch.tasks.agents.task import arun_agent
from aiorch.tasks.messaging.bus import MessageBus
from aiorch.tasks.messaging.envelope import DataPart, Envelope, TextPart, parse_address
from aiorch.tasks.messaging.people import aask_person
from aiorch.tasks.messaging.store import MessageStore


@flow(name="aiorch-person-test", persist_result=True)
async def draft_then_ask(
    base_url: str | None, store: str, suspend: bool = False, answer_within: int = 180
) -> dict[str, Any]:
    """Draft one line with an agent (passthrough without a base URL), then ask ada."""
    if base_url is None:
        agent = Agent(instruction="Repeat the message.", model="passthrough")
    else:
        agent = Agent(
            instruction="Answer in one short sentence.",
            model="generic.smollm2",
            provider=ModelProvider(kind="generic", base_url=base_url),
            max_tokens=24,
        )
    draft = await arun_agent(agent, "Say hello to the release team.")
    question = Envelope(
        sender=parse_address("agent:release"),
        recipient=parse_address("person:ada"),
        kind="request",
        parts=[TextPart(text=f"Publish this draft? {draft.text}")],
    )
    if suspend:
        reply = await aask_person(question, suspend=True, timeout=answer_within)
    else:
        reply = await MessageBus(MessageStore(Path(store))).request(question, answer_within)
    answer = next(part.data for part in reply.parts if isinstance(part, DataPart))
    words = [part.text for part in reply.parts if isinstance(part, TextPart)]
    return {"draft": draft.text, "answer": answer, "reply": words, "from": str(reply.sender)}


if __name__ == "__main__":
    _, name = sys.argv[1:]
    draft_then_ask.serve(name=name, print_starting_message=False)
