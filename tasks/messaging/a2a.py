"""Envelopes to A2A messages and back, with nothing lost either way.

An envelope becomes an A2A ``Message`` (the official ``a2a-sdk`` types): its id is the
``message_id``, requests and events take the role ``user`` and replies ``agent``, and each
part maps to a ``Part`` (text, ``data``, a file by ``url`` or ``raw`` bytes, with
``filename``, ``media_type`` and ``metadata``). What A2A has no field for (sender,
recipient, kind, correlation, reply-to, priority, times, headers) travels in the
message's metadata under ``aiorch``. A message from another A2A agent, which has no
such metadata, becomes an envelope whose headers keep what the envelope has no field
for (``a2a.context_id``, ``a2a.task_id``, ``a2a.role``, ``a2a.extensions``,
``a2a.reference_task_ids``, ``a2a.metadata``), so it converts back unchanged.

One loss is the protocol's own: protobuf has one number type, so an integer inside
data comes back as the same number, an int when it is integral.

Example:
    ```python
    from aiorch.tasks.messaging.a2a import envelope_from_a2a, envelope_to_a2a
    from aiorch.tasks.messaging.envelope import Envelope, TextPart, parse_address

    sent = Envelope(
        sender=parse_address("agent:coordinator"),
        recipient=parse_address("agent:summariser"),
        kind="request",
        parts=[TextPart(text="hello")],
    )
    assert envelope_from_a2a(envelope_to_a2a(sent)) == sent
    ```
"""

from __future__ import annotations

import json
from typing import Any

from a2a.types import Message, Part, Role
from google.protobuf import json_format, struct_pb2
from pydantic import JsonValue, TypeAdapter

from aiorch.core.errors import ConfigurationError
from aiorch.tasks.messaging.envelope import (
    Address,
    AgentAddress,
    DataPart,
    Envelope,
    FilePart,
    TextPart,
)

METADATA_KEY = "aiorch"
HEADER_PREFIX = "a2a."
_ADDRESS: TypeAdapter[Any] = TypeAdapter(Address)
_EXACT_INTEGER = 2**53


def _to_value(value: JsonValue) -> struct_pb2.Value:
    converted = struct_pb2.Value()
    json_format.ParseDict(value, converted)
    return converted


def _from_protobuf(value: Any) -> Any:
    """Numbers come back as ints when integral (protobuf keeps only doubles)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < _EXACT_INTEGER:
        return int(value)
    if isinstance(value, list):
        return [_from_protobuf(item) for item in value]
    if isinstance(value, dict):
        return {key: _from_protobuf(item) for key, item in value.items()}
    return value


def _struct(mapping: dict[str, Any]) -> struct_pb2.Struct:
    converted = struct_pb2.Struct()
    converted.update(mapping)
    return converted


def _part_to_a2a(part: TextPart | DataPart | FilePart) -> Part:
    converted = Part(metadata=_struct(part.metadata)) if part.metadata else Part()
    if isinstance(part, TextPart):
        converted.text = part.text
    elif isinstance(part, DataPart):
        converted.data.CopyFrom(_to_value(part.data))
    else:
        if part.url is not None:
            converted.url = part.url
        else:
            converted.raw = part.raw or b""
        if part.filename is not None:
            converted.filename = part.filename
        if part.media_type is not None:
            converted.media_type = part.media_type
    return converted


def _part_from_a2a(part: Part) -> TextPart | DataPart | FilePart:
    metadata = _from_protobuf(json_format.MessageToDict(part.metadata))
    content = part.WhichOneof("content")
    if content == "text":
        return TextPart(text=part.text, metadata=metadata)
    if content == "data":
        return DataPart(
            data=_from_protobuf(json_format.MessageToDict(part.data)), metadata=metadata
        )
    if content in {"url", "raw"}:
        return FilePart(
            url=part.url if content == "url" else None,
            raw=part.raw if content == "raw" else None,
            filename=part.filename or None,
            media_type=part.media_type or None,
            metadata=metadata,
        )
    raise ConfigurationError("an A2A part holds no content (text, data, url or raw); add one")


def envelope_to_a2a(envelope: Envelope) -> Message:
    """The A2A message carrying ``envelope``."""
    headers = dict(envelope.headers)
    foreign = {key: headers.pop(key) for key in list(headers) if key.startswith(HEADER_PREFIX)}
    extra = json.loads(foreign.pop("a2a.metadata", "{}"))
    envelope_fields = envelope.model_dump(mode="json", exclude={"id", "parts", "headers"})
    message = Message(
        message_id=envelope.id,
        role=Role.Value(foreign.pop("a2a.role", _role(envelope))),
        parts=[_part_to_a2a(part) for part in envelope.parts],
        metadata=_struct({**extra, METADATA_KEY: {**envelope_fields, "headers": headers}}),
        extensions=json.loads(foreign.pop("a2a.extensions", "[]")),
        reference_task_ids=json.loads(foreign.pop("a2a.reference_task_ids", "[]")),
    )
    if "a2a.context_id" in foreign:
        message.context_id = foreign["a2a.context_id"]
    if "a2a.task_id" in foreign:
        message.task_id = foreign["a2a.task_id"]
    return message


def _role(envelope: Envelope) -> str:
    return "ROLE_AGENT" if envelope.kind == "reply" else "ROLE_USER"


def envelope_from_a2a(message: Message, recipient: Address | None = None) -> Envelope:
    """The envelope an A2A message carries.

    A message of another A2A agent (no ``aiorch`` metadata) is a request from
    ``agent:a2a/<context or message id>`` (a reply when its role is ``agent``) to
    ``recipient``; what the envelope has no field for is kept in ``a2a.*`` headers.

    Raises:
        ConfigurationError: a foreign message and no recipient to address it to, or a
            part without content.
    """
    metadata = _from_protobuf(json_format.MessageToDict(message.metadata))
    parts = [_part_from_a2a(part) for part in message.parts]
    ours = metadata.pop(METADATA_KEY, None)
    headers: dict[str, str] = {}
    if message.context_id:
        headers["a2a.context_id"] = message.context_id
    if message.task_id:
        headers["a2a.task_id"] = message.task_id
    if message.extensions:
        headers["a2a.extensions"] = json.dumps(list(message.extensions))
    if message.reference_task_ids:
        headers["a2a.reference_task_ids"] = json.dumps(list(message.reference_task_ids))
    if metadata:
        headers["a2a.metadata"] = json.dumps(metadata, sort_keys=True)
    role = Role.Name(message.role)
    if ours is not None:
        envelope = Envelope.model_validate({**ours, "id": message.message_id, "parts": parts})
        if role != _role(envelope):
            headers["a2a.role"] = role
        return envelope.model_copy(update={"headers": {**envelope.headers, **headers}})
    if recipient is None:
        raise ConfigurationError(
            "recipient: a message from another A2A agent names no aiorch recipient; pass "
            "the address it was sent to"
        )
    reply = role == "ROLE_AGENT"
    headers["a2a.role"] = role
    return Envelope(
        id=message.message_id,
        sender=AgentAddress(type="a2a", key=_key(message.context_id or message.message_id)),
        recipient=recipient,
        kind="reply" if reply else "request",
        correlation_id=message.task_id or message.message_id if reply else None,
        headers=headers,
        parts=parts,
    )


def _key(text: str) -> str:
    """An agent key from an A2A id (ids may hold characters addresses do not)."""
    cleaned = "".join(
        character if character.isalnum() or character in "_.-" else "-" for character in text
    )
    return (cleaned.lstrip("_.-") or "anonymous")[:128]
