"""What a handled message leaves in Prefect: the result of its ``handle-message`` task run.

Messaging writes it (:func:`aiorch.tasks.messaging.handlers.as_task`); the run report
reads it to draw the conversation, so both depend on this record and not on each other.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from aiorch.core.models import AiorchModel

SUMMARY_CHARS = 80


def summary(text: str) -> str:
    """``text`` on one line, cut to :data:`SUMMARY_CHARS` characters."""
    line = " ".join(text.split())
    return line if len(line) <= SUMMARY_CHARS else line[: SUMMARY_CHARS - 1] + "…"


class MessageRecord(AiorchModel):
    """One handled message: who sent what to whom, and what came back."""

    id: str
    sender: str = Field(description="The sender's address, e.g. agent:coordinator.")
    recipient: str = Field(description="The address it was sent to (a capability, a topic ...).")
    handler: str = Field(description="The agent that handled it.")
    kind: str = Field(description="request, reply or event.")
    priority: int
    created_at: datetime
    content: str = Field(description="The message's text, summarised to one line.")
    answer: str | None = Field(
        default=None, description="The reply's text, summarised (requests only)."
    )
