"""The message envelope: who sends what to whom, with which priority and for how long.

Addresses name an agent (type and key, as AutoGen's ``AgentId``), a topic (broadcast),
a capability (any one agent offering it) or a person. The body is a list of parts
close to A2A's: text, structured data and file references.

Example:
    ```python
    from aiorch.tasks.messaging.envelope import Envelope, TextPart, parse_address

    message = Envelope(
        sender=parse_address("agent:coordinator"),
        recipient=parse_address("capability:summarise"),
        kind="request",
        parts=[TextPart(text="Summarise the incident report.")],
    )
    print(message.recipient)  # capability:summarise
    ```
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Literal, Self
from uuid import uuid4

from pydantic import ConfigDict, Field, JsonValue, model_validator

from aiorch.core.errors import ConfigurationError
from aiorch.core.models import AiorchModel
from aiorch.core.redaction import quoted

ENVELOPE_VERSION: Literal["aiorch.message/v1"] = "aiorch.message/v1"
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
# Topics are dot-separated words; subscriptions match them with * (one word) and # (any).
TOPIC = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
LOWEST_PRIORITY, HIGHEST_PRIORITY, DEFAULT_PRIORITY = 0, 9, 4


class _Frozen(AiorchModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentAddress(_Frozen):
    """One agent: its type and, among agents of that type, its key."""

    kind: Literal["agent"] = "agent"
    type: str = Field(pattern=NAME, description="The agent's type, e.g. summariser.")
    key: str = Field(default="default", pattern=NAME, description="Which one of that type.")

    def __str__(self) -> str:
        return f"agent:{self.type}" + ("" if self.key == "default" else f"/{self.key}")


class TopicAddress(_Frozen):
    """Everyone subscribed to a topic."""

    kind: Literal["topic"] = "topic"
    topic: str = Field(pattern=TOPIC, description="Dot-separated, e.g. incidents.new.")

    def __str__(self) -> str:
        return f"topic:{self.topic}"


class CapabilityAddress(_Frozen):
    """Any one agent offering a capability (competing consumers)."""

    kind: Literal["capability"] = "capability"
    capability: str = Field(pattern=NAME, description="e.g. summarise.")

    def __str__(self) -> str:
        return f"capability:{self.capability}"


class PersonAddress(_Frozen):
    """A person, who answers in the Prefect UI."""

    kind: Literal["person"] = "person"
    name: str = Field(pattern=NAME, description="e.g. on-call.")

    def __str__(self) -> str:
        return f"person:{self.name}"


Address = Annotated[
    AgentAddress | TopicAddress | CapabilityAddress | PersonAddress, Field(discriminator="kind")
]
_ADDRESS = re.compile(r"^(agent|topic|capability|person):(.+)$")


def parse_address(text: str) -> AgentAddress | TopicAddress | CapabilityAddress | PersonAddress:
    """``agent:TYPE[/KEY]``, ``topic:NAME``, ``capability:NAME`` or ``person:NAME``.

    Raises:
        ConfigurationError: the text is none of these.
    """
    match = _ADDRESS.match(text)
    if match is None:
        raise ConfigurationError(
            f"address {quoted(text)}: write agent:TYPE[/KEY], topic:NAME, capability:NAME or "
            "person:NAME, e.g. 'agent:summariser/eu'"
        )
    kind, rest = match.groups()
    try:
        if kind == "agent":
            type_, _, key = rest.partition("/")
            return AgentAddress(type=type_, key=key or "default")
        if kind == "topic":
            return TopicAddress(topic=rest)
        if kind == "capability":
            return CapabilityAddress(capability=rest)
        return PersonAddress(name=rest)
    except ValueError:
        raise ConfigurationError(
            f"address {quoted(text)}: names are letters, digits, '_', '.' and '-' (topics: words "
            "joined by dots), up to 128 characters"
        ) from None


class TextPart(_Frozen):
    """Plain text."""

    kind: Literal["text"] = "text"
    text: str
    metadata: dict[str, JsonValue] = Field(default_factory=dict)


class DataPart(_Frozen):
    """Structured data (any JSON value)."""

    kind: Literal["data"] = "data"
    data: JsonValue
    metadata: dict[str, JsonValue] = Field(default_factory=dict)


class FilePart(_Frozen):
    """A file, by reference (``url``) or inline (``raw`` bytes, base64 in JSON)."""

    kind: Literal["file"] = "file"
    url: str | None = None
    raw: bytes | None = None
    filename: str | None = None
    media_type: str | None = None
    metadata: dict[str, JsonValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.url is None) == (self.raw is None):
            raise ValueError("a file part needs exactly one of url (a reference) or raw (bytes)")
        return self


Part = Annotated[TextPart | DataPart | FilePart, Field(discriminator="kind")]


def moment(timestamp: float) -> datetime:
    """An epoch timestamp (a bus's clock) as the aware datetime envelopes compare with."""
    return datetime.fromtimestamp(timestamp, UTC)


def _now() -> datetime:
    return datetime.now(UTC)


class Envelope(_Frozen):
    """One message, as every transport carries it (version ``aiorch.message/v1``)."""

    version: Literal["aiorch.message/v1"] = ENVELOPE_VERSION
    id: str = Field(default_factory=lambda: uuid4().hex, min_length=1, max_length=200)
    sender: Address
    recipient: Address
    kind: Literal["request", "reply", "event"] = Field(
        description="request: expects a reply; reply: answers one; event: one-way."
    )
    correlation_id: str | None = Field(
        default=None, description="The request a reply answers (its id)."
    )
    reply_to: Address | None = Field(
        default=None, description="Where replies go; empty: the sender."
    )
    priority: int = Field(
        default=DEFAULT_PRIORITY,
        ge=LOWEST_PRIORITY,
        le=HIGHEST_PRIORITY,
        description="0 (lowest) to 9 (highest), as AMQP's.",
    )
    created_at: datetime = Field(default_factory=_now)
    expires_at: datetime | None = Field(
        default=None, description="After this the message is dead-lettered, not delivered."
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Free-form; trace context as W3C traceparent."
    )
    parts: list[Part] = Field(min_length=1, description="The body.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.kind == "reply" and self.correlation_id is None:
            raise ValueError("a reply needs correlation_id: the id of the request it answers")
        if self.kind == "request" and isinstance(self.recipient, TopicAddress):
            raise ValueError(
                "a request to a topic would get any number of replies; send an event to "
                "the topic, or a request to an agent or a capability"
            )
        if self.created_at.tzinfo is None or (
            self.expires_at is not None and self.expires_at.tzinfo is None
        ):
            raise ValueError("created_at and expires_at need a time zone, e.g. UTC")
        if self.expires_at is not None and self.expires_at <= self.created_at:
            raise ValueError("expires_at must be after created_at")
        return self

    def reply(self, parts: list[TextPart | DataPart | FilePart], **fields: object) -> Envelope:
        """The reply to this request, addressed back (to ``reply_to`` or the sender)."""
        return Envelope.model_validate(
            {
                "sender": self.recipient,
                "recipient": self.reply_to or self.sender,
                "kind": "reply",
                "correlation_id": self.id,
                "priority": self.priority,
                "headers": self.headers,
                "parts": parts,
                **fields,
            }
        )

    def text(self) -> str:
        """The parts as one text: text as is, data as JSON, files by name or URL."""
        lines = []
        for part in self.parts:
            if isinstance(part, TextPart):
                lines.append(part.text)
            elif isinstance(part, DataPart):
                lines.append(json.dumps(part.data, sort_keys=True))
            else:
                lines.append(f"[file {part.filename or part.url or 'attached'}]")
        return "\n".join(lines)

    def expired(self, now: datetime | None = None) -> bool:
        """Whether the message is past its expiry."""
        return self.expires_at is not None and (now or _now()) >= self.expires_at
