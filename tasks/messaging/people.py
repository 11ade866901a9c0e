"""People on the bus: a request to ``person:NAME`` waits for their answer in the Prefect UI.

:func:`aask_person` (or ``bus.request`` to a person's address) pauses the flow run
with typed input: the Prefect UI shows the question (its sender and text) above a form
for the answer, and the answer comes back as the reply. With ``suspend=True`` the run
is suspended instead: its process exits, nothing is held while the person thinks (days,
if need be), and when they answer Prefect runs the flow again; every agent call and
step that completed before the question replays from its stored result instead of
running again, and the question itself returns the stored answer. Suspending needs a
flow run from a deployment (a worker starts it again).

Example:
    ```python
    from prefect import flow

    from aiorch.tasks.messaging.envelope import Envelope, TextPart, parse_address
    from aiorch.tasks.messaging.people import aask_person

    @flow
    async def release() -> bool:
        reply = await aask_person(
            Envelope(
                sender=parse_address("agent:release"),
                recipient=parse_address("person:oncall"),
                kind="request",
                parts=[TextPart(text="Ship 2.1 to production?")],
            ),
            timeout=3600,
        )
        return bool(reply.parts[-1].data["approve"])
    ```
"""

from __future__ import annotations

from prefect.flow_runs import apause_flow_run, asuspend_flow_run
from prefect.input import RunInput
from pydantic import ConfigDict, Field

from aiorch.core.errors import ConfigurationError
from aiorch.tasks.messaging.envelope import DataPart, Envelope, PersonAddress, TextPart

DEFAULT_TIMEOUT_SECONDS = 3600
# How often a paused run asks the server whether the person has answered.
POLL_SECONDS = 2


class PersonReply(RunInput):
    """What a person answers: a reply, and whether they approve."""

    # What a person types may be anything, a pasted key too: never quoted in errors.
    model_config = ConfigDict(hide_input_in_errors=True)

    reply: str = Field(default="", description="Your answer, in words (may be empty).")
    approve: bool = Field(default=True, description="Approve what is asked.")


def question_markdown(request: Envelope) -> str:
    """What the Prefect UI shows above the answer form."""
    return f"**{request.sender}** asks **{request.recipient}**:\n\n{request.text()}"


async def aask_person(
    request: Envelope,
    *,
    wait_for_input: type[RunInput] = PersonReply,
    timeout: int = DEFAULT_TIMEOUT_SECONDS,
    suspend: bool = False,
    key: str | None = None,
) -> Envelope:
    """Ask a person and wait for their answer, given in the Prefect UI; the reply.

    Args:
        request: a request addressed to ``person:NAME``.
        wait_for_input: the form the person fills in (a ``RunInput``); its fields come
            back as the reply's data part, and a ``reply`` field as its text too.
        timeout: seconds to wait before the flow run fails.
        suspend: suspend the run (its process exits) instead of pausing it.
        key: tells questions apart across a suspended run's re-runs; by default, their
            order in the run (Prefect's pause counter), so keep the order stable.

    Raises:
        ConfigurationError: the request is not a request to a person.
    """
    if not isinstance(request.recipient, PersonAddress) or request.kind != "request":
        raise ConfigurationError(
            f"recipient: {request.recipient} ({request.kind}) is not a request to a person; "
            "address person:NAME with kind='request'"
        )
    form = wait_for_input.with_initial_data(description=question_markdown(request))
    if suspend:
        answer = await asuspend_flow_run(wait_for_input=form, timeout=timeout, key=key)
    else:
        answer = await apause_flow_run(
            wait_for_input=form, timeout=timeout, poll_interval=POLL_SECONDS, key=key
        )
    data = answer.model_dump(mode="json", exclude={"metadata"})
    parts: list[TextPart | DataPart] = []
    if isinstance(data.get("reply"), str) and data["reply"]:
        parts.append(TextPart(text=data["reply"]))
    parts.append(DataPart(data=data))
    return request.reply(list(parts))
