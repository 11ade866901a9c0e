"""The message envelope: addresses, validation that names the fix, and lossless A2A."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from a2a.types import Message, Part, Role
from google.protobuf import json_format
from pydantic import ValidationError

from aiorch.core.errors import ConfigurationError
from aiorch.tasks.messaging.a2a import envelope_from_a2a, envelope_to_a2a
from aiorch.tasks.messaging.envelope import (
    AgentAddress,
    DataPart,
    Envelope,
    FilePart,
    TextPart,
    parse_address,
)

ROOT = Path(__file__).resolve().parents[1]
CREATED = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)


def _request(**fields: Any) -> Envelope:
    values: dict[str, Any] = {
        "sender": parse_address("agent:coordinator"),
        "recipient": parse_address("capability:summarise"),
        "kind": "request",
        "parts": [TextPart(text="hello")],
        **fields,
    }
    return Envelope(**values)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("agent:summariser", AgentAddress(type="summariser")),
        ("agent:summariser/eu", AgentAddress(type="summariser", key="eu")),
    ],
)
def test_addresses_parse_and_print_back(text: str, expected: AgentAddress) -> None:
    assert parse_address(text) == expected
    assert str(parse_address(text)) == text
    for other in ("topic:incidents.new", "capability:summarise", "person:on-call"):
        assert str(parse_address(other)) == other


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("summariser", "write agent:TYPE[/KEY], topic:NAME, capability:NAME or person:NAME"),
        ("queue:x", "write agent:TYPE[/KEY]"),
        ("agent:has space", "names are letters, digits"),
        ("topic:a..b", "topics: words joined by dots"),
    ],
)
def test_bad_addresses_name_the_form_to_write(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        parse_address(text)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "reply"}, "a reply needs correlation_id"),
        ({"recipient": parse_address("topic:incidents")}, "send an event to the topic"),
        ({"created_at": CREATED, "expires_at": CREATED}, "expires_at must be after created_at"),
        ({"created_at": datetime(2026, 12, 2, 9, 30)}, "need a time zone"),
        ({"priority": 10}, "priority"),
        ({"parts": []}, "parts"),
        ({"parts": [FilePart.model_construct(url="u", raw=b"x")]}, "exactly one of url"),
        ({"version": "aiorch.message/v0"}, "version"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_envelopes_name_the_field_and_the_fix(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        Envelope.model_validate({**_request().model_dump(), **fields})


def test_a_reply_goes_back_to_reply_to_or_the_sender() -> None:
    request = _request(priority=8, headers={"traceparent": "00-abc-def-01"})
    reply = request.reply([TextPart(text="done")])
    assert (reply.kind, reply.correlation_id, reply.recipient) == (
        "reply",
        request.id,
        request.sender,
    )
    assert (reply.priority, reply.headers) == (8, request.headers)
    elsewhere = _request(reply_to=parse_address("person:on-call")).reply([TextPart(text="x")])
    assert str(elsewhere.recipient) == "person:on-call"
    now = datetime.now(UTC)
    late = _request(created_at=now - timedelta(seconds=10), expires_at=now - timedelta(seconds=1))
    assert late.expired()
    assert not _request().expired()


def test_an_envelope_survives_a2a_and_back_unchanged() -> None:
    envelope = _request(
        reply_to=parse_address("agent:coordinator/inbox"),
        priority=9,
        created_at=CREATED,
        expires_at=CREATED + timedelta(minutes=5),
        headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
        parts=[
            TextPart(text="Summarise this.", metadata={"lang": "en"}),
            DataPart(data={"severity": 3, "tags": ["db", "eu"], "ratio": 0.25, "ok": True}),
            FilePart(url="file:///reports/incident.md", media_type="text/markdown"),
            FilePart(raw=b"\x00\x01binary", filename="blob.bin"),
        ],
    )
    message = envelope_to_a2a(envelope)
    assert message.message_id == envelope.id
    assert message.role == Role.ROLE_USER
    assert [part.WhichOneof("content") for part in message.parts] == ["text", "data", "url", "raw"]
    assert envelope_from_a2a(message) == envelope
    reply = envelope.reply([TextPart(text="done")])
    assert envelope_to_a2a(reply).role == Role.ROLE_AGENT
    assert envelope_from_a2a(envelope_to_a2a(reply)) == reply


def test_a_message_of_another_a2a_agent_survives_the_envelope_and_back() -> None:
    foreign = Message(
        message_id="msg-1",
        context_id="ctx 42",
        task_id="task-7",
        role=Role.ROLE_USER,
        parts=[Part(text="hi"), Part(data=json_format.ParseDict({"n": 2}, Part().data))],
        metadata={"client": "other-sdk"},
        extensions=["https://example.com/ext/v1"],
        reference_task_ids=["task-6"],
    )
    recipient = parse_address("agent:summariser")
    envelope = envelope_from_a2a(foreign, recipient)
    assert str(envelope.sender) == "agent:a2a/ctx-42"
    assert envelope.recipient == recipient
    assert envelope.kind == "request"
    assert envelope.parts[1] == DataPart(data={"n": 2})
    back = envelope_to_a2a(envelope)
    # Ours carry their own fields in metadata["aiorch"]; everything else is as it came.
    restored = json_format.MessageToDict(back)
    restored["metadata"].pop("aiorch")
    assert restored == json_format.MessageToDict(foreign)
    with pytest.raises(ConfigurationError, match="pass the address it was sent to"):
        envelope_from_a2a(foreign)


def test_the_docs_publish_the_envelopes_json_schema() -> None:
    text = (ROOT / "docs" / "messaging.md").read_text()
    block = text.split("<!-- envelope-schema -->", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    assert json.loads(block) == Envelope.model_json_schema()
