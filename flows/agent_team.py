"""The reference flow of agent messaging: a coordinator, writers, a reviewer and a person.

The coordinator broadcasts a brief on a topic (every writer hears it), asks each writer
for a draft by RPC, routes the drafts to whichever agent offers the ``review``
capability, and (with ``approver`` set) asks that person to approve the result: the
run pauses, and the answer given in the Prefect UI is the reply. Every handled message
is a task run, and the run report draws the conversation as a sequence diagram with a
table of the messages and their timings.

The bus is the configured one (``AIORCH_MESSAGE_BROKER_URL``: RabbitMQ, else the
embedded store); the participants' addresses carry the flow run's id, so runs at the
same time never take each other's messages.

Example:
    ```python
    from aiorch.flows.agent_team import agent_team

    result = agent_team(brief="Name a good first task for a new team member.", writers=2,
                        agent_model="passthrough")
    print(result.review)
    ```
"""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from pydantic import Field

from aiorch.agent_blocks import Agent, ModelProvider
from aiorch.agent_blocks.provider import LOCAL_MODEL
from aiorch.core.models import AiorchModel
from aiorch.tasks.agents.local_model import INSTALL_HINT, local_model_installed
from aiorch.tasks.messaging.bus import Handler, MessageBus
from aiorch.tasks.messaging.envelope import (
    DataPart,
    Envelope,
    FilePart,
    TextPart,
    parse_address,
)
from aiorch.tasks.messaging.handlers import agent_handler, as_task
from aiorch.tasks.monitoring.run_report import publish_run_report

DEFAULT_BRIEF = "Suggest a name for a tool that runs AI agents as durable workflows."
REPLY_SECONDS = 300
WRITER_INSTRUCTION = "You are writer {index} of a team. Answer the brief in one short sentence."
REVIEWER_INSTRUCTION = "You review drafts. Say in one short sentence which draft is best and why."


class TeamResult(AiorchModel):
    """What the team produced."""

    drafts: list[str]
    review: str
    approved: bool | None = Field(
        default=None, description="The person's decision; None when nobody was asked."
    )
    comment: str | None = None
    notice: str | None = None


def _agent(instruction: str, agent_model: str) -> Agent:
    if agent_model == "local":
        return Agent(
            instruction=instruction,
            model=LOCAL_MODEL,
            provider=ModelProvider(kind="local"),
            temperature=0.7,
            max_tokens=40,
        )
    return Agent(instruction=instruction, model="passthrough")


def _writer(agent: Agent, briefs: list[str]) -> Handler:
    answer = agent_handler(agent)

    async def handle(message: Envelope) -> list[TextPart | DataPart | FilePart] | None:
        if message.kind == "event":
            briefs.append(message.text())  # the broadcast brief: noted, answered on request
            return None
        return list(await answer(message) or [])

    return handle


@flow(name="aiorch-agent-team", on_completion=[publish_run_report], on_failure=[publish_run_report])
async def agent_team(
    brief: Annotated[str, Field(min_length=1, description="What the team works on.")] = (
        DEFAULT_BRIEF
    ),
    writers: Annotated[int, Field(ge=1, le=8, description="How many writer agents.")] = 2,
    agent_model: Annotated[
        str, Field(description="auto (the local model when installed), local or passthrough.")
    ] = "auto",
    approver: Annotated[
        str | None, Field(description="A person (person:NAME) who approves the result.")
    ] = None,
    answer_within: Annotated[int, Field(ge=1, description="Seconds the person has.")] = 3600,
) -> TeamResult:
    """Broadcast the brief, collect drafts by RPC, route them to a reviewer, ask a person."""
    notice = None
    if agent_model == "auto":
        agent_model = "local" if local_model_installed() else "passthrough"
        if agent_model == "passthrough":
            notice = f"the local model is not installed, so passthrough answered: {INSTALL_HINT}"
            get_run_logger().warning("Notice: %s", notice)
    run = flow_run.get_id() or "local"
    team = run.replace("-", "")[:8]
    coordinator = parse_address(f"agent:coordinator/{team}")
    bus = MessageBus.from_settings()
    briefs: list[str] = []
    for index in range(writers):
        agent = _agent(WRITER_INSTRUCTION.format(index=index + 1), agent_model)
        bus.register(
            f"agent:writer/{team}-{index + 1}",
            as_task(_writer(agent, briefs)),
            topics=[f"team.{team}.brief"],
        )
    bus.register(
        f"agent:reviewer/{team}",
        as_task(agent_handler(_agent(REVIEWER_INSTRUCTION, agent_model))),
        capabilities=[f"review-{team}"],
    )
    try:
        async with bus.serving():
            await bus.send(
                Envelope(
                    sender=coordinator,
                    recipient=parse_address(f"topic:team.{team}.brief"),
                    kind="event",
                    parts=[TextPart(text=brief)],
                )
            )
            drafts = []
            for index in range(writers):
                reply = await bus.request(
                    Envelope(
                        sender=coordinator,
                        recipient=parse_address(f"agent:writer/{team}-{index + 1}"),
                        kind="request",
                        parts=[TextPart(text=brief)],
                    ),
                    REPLY_SECONDS,
                )
                drafts.append(reply.text())
            listing = "\n".join(f"Draft {n}: {text}" for n, text in enumerate(drafts, 1))
            review = await bus.request(
                Envelope(
                    sender=coordinator,
                    recipient=parse_address(f"capability:review-{team}"),
                    kind="request",
                    parts=[TextPart(text=f"Brief: {brief}\n{listing}")],
                ),
                REPLY_SECONDS,
            )
            approved = comment = None
            if approver is not None:
                decision = await bus.request(
                    Envelope(
                        sender=coordinator,
                        recipient=parse_address(approver),
                        kind="request",
                        parts=[TextPart(text=f"{listing}\nReview: {review.text()}\nApprove?")],
                    ),
                    answer_within,
                )
                answer = next(p.data for p in decision.parts if isinstance(p, DataPart))
                assert isinstance(answer, dict)
                approved, comment = bool(answer.get("approve")), str(answer.get("reply") or "")
    finally:
        await bus.close()
    return TeamResult(
        drafts=drafts,
        review=review.text(),
        approved=approved,
        comment=comment,
        notice=notice,
    )
