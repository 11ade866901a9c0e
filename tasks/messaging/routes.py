"""Routing by declarative rules, kept as configuration: the ``MessageRoutes`` block.

Senders address a route (``agent:triage``); the bus readdresses each message to the
first rule that matches it (headers equal, data fields equal, text matching a regular
expression), else to the default route, else to the dead letters with the reason.
Rules are data, saved as a Prefect block and edited in the UI, so changing where
messages go needs no deployment.

Example:
    ```python
    from aiorch.tasks.messaging.routes import MessageRoutes, RouteRule

    routes = MessageRoutes(
        address="agent:triage",
        rules=[
            RouteRule(to="capability:billing", when_data={"topic": "invoice"}),
            RouteRule(to="agent:oncall", when_header={"severity": "high"}),
            RouteRule(to="capability:translate", when_text="bonjour|hallo"),
        ],
        default="capability:general",
    )
    ```
"""

from __future__ import annotations

import re
from typing import Any, Self

from prefect.blocks.core import Block
from pydantic import Field, field_validator, model_validator

from aiorch.core.blocks import StrictFields
from aiorch.core.models import AiorchModel
from aiorch.core.redaction import quoted
from aiorch.tasks.messaging.envelope import (
    AgentAddress,
    CapabilityAddress,
    DataPart,
    Envelope,
    PersonAddress,
    TextPart,
    TopicAddress,
    parse_address,
)

Destination = AgentAddress | TopicAddress | CapabilityAddress


def _person_in(text: str, field: str) -> str | None:
    """Why ``text`` cannot be a destination (it is a person); None when it can."""
    if isinstance(parse_address(text), PersonAddress):
        return f"{field}: {quoted(text)} is a person; route to an agent, a capability or a topic"
    return None


def _field_of(data: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(data, dict) or key not in data:
            return _MISSING
        data = data[key]
    return data


_MISSING = object()


class RouteRule(AiorchModel):
    """Messages matching every condition given go to ``to``."""

    to: str = Field(
        description="Where matching messages go: agent:..., capability:... or topic:..."
    )
    when_header: dict[str, str] = Field(
        default_factory=dict, description="Headers that must have exactly these values."
    )
    when_data: dict[str, Any] = Field(
        default_factory=dict,
        description="Fields of the message's data part (dotted paths) that must equal these.",
    )
    when_text: str | None = Field(
        default=None, description="A regular expression searched for in the text parts."
    )

    @field_validator("to")
    @classmethod
    def _to_is_a_destination(cls, value: str) -> str:
        refusal = _person_in(value, "to")
        if refusal is not None:
            raise ValueError(refusal)
        return value

    @field_validator("when_text")
    @classmethod
    def _text_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as error:
                raise ValueError(
                    f"when_text: not a regular expression ({error.msg} at {error.pos})"
                ) from None
        return value

    @model_validator(mode="after")
    def _has_a_condition(self) -> Self:
        if not (self.when_header or self.when_data or self.when_text):
            raise ValueError(
                f"a rule to {self.to} has no condition (when_header, when_data or when_text); "
                "send everything else there with the routes' default instead"
            )
        return self

    def matches(self, envelope: Envelope) -> bool:
        """Whether ``envelope`` meets every condition of this rule."""
        if any(envelope.headers.get(key) != value for key, value in self.when_header.items()):
            return False
        if self.when_data:
            data = next((p.data for p in envelope.parts if isinstance(p, DataPart)), None)
            if any(_field_of(data, path) != value for path, value in self.when_data.items()):
                return False
        if self.when_text is not None:
            text = "\n".join(p.text for p in envelope.parts if isinstance(p, TextPart))
            if re.search(self.when_text, text) is None:
                return False
        return True


class MessageRoutes(StrictFields, Block):
    """Where messages sent to ``address`` go, rule by rule, then to the default."""

    _block_type_name = "aiorch Message Routes"
    _block_type_slug = "aiorch-message-routes"
    _description = (
        "Content- and header-based routing for aiorch's message bus: messages sent to the "
        "address go to the first matching rule's destination, else to the default route, "
        "else to the dead letters."
    )

    address: str = Field(
        description="The address senders write, e.g. agent:triage; no agent serves it."
    )
    rules: list[RouteRule] = Field(default_factory=list, description="Tried in order.")
    default: str | None = Field(
        default=None,
        description="Where a message no rule matches goes; empty: the dead letters.",
    )

    @field_validator("address")
    @classmethod
    def _address_is_an_agent(cls, value: str) -> str:
        if not isinstance(parse_address(value), AgentAddress):
            raise ValueError(f"address: {quoted(value)} is not an agent address; write agent:NAME")
        return value

    @field_validator("default")
    @classmethod
    def _default_is_a_destination(cls, value: str | None) -> str | None:
        refusal = None if value is None else _person_in(value, "default")
        if refusal is not None:
            raise ValueError(refusal)
        return value

    def destination(self, envelope: Envelope) -> Destination | None:
        """Where ``envelope`` goes: the first matching rule's, the default, or None."""
        for rule in self.rules:
            if rule.matches(envelope):
                return _parsed(rule.to)
        return None if self.default is None else _parsed(self.default)


def _parsed(text: str) -> Destination:
    address = parse_address(text)
    assert not isinstance(address, PersonAddress)  # refused when the routes were made
    return address
