"""The message bus: direct messages, RPC, broadcast and capability routing.

A :class:`MessageBus` serves the handlers registered in this process over a
:class:`~aiorch.tasks.messaging.transport.Transport`: the embedded one (one SQLite
file every process on the machine may share; pass a
:class:`~aiorch.tasks.messaging.store.MessageStore`) or RabbitMQ
(:class:`~aiorch.tasks.messaging.rabbitmq.RabbitTransport`). Delivery is at least once,
a message id is handled once, and a sender's messages to one recipient are handled in
order, also while the bus handles up to ``max_concurrent`` messages at once.

- ``send`` queues an envelope for an agent (``agent:TYPE/KEY``), for any one agent
  offering a capability (``capability:NAME``), or for every subscriber of a topic
  (``topic:NAME``, events only; subscriptions are AMQP-style patterns, and a publisher
  hears its own events only if it asked to).
- ``request`` sends a request and waits for its reply; a handler's typed error comes
  back raised as that error (:func:`~aiorch.tasks.messaging.errors.remote_error`).
- A handler's retryable error is tried again after ``retry_seconds``, up to
  ``max_attempts`` deliveries in all.
- A message that cannot be delivered (unknown recipient, expired, too large, failed on
  every attempt) goes to the dead letters with the reason, from where
  :meth:`MessageBus.redeliver` sends it again.

Example:
    ```python
    import anyio
    from pathlib import Path
    from tempfile import mkdtemp

    from aiorch.tasks.messaging.bus import MessageBus
    from aiorch.tasks.messaging.envelope import Envelope, TextPart, parse_address
    from aiorch.tasks.messaging.store import MessageStore

    async def shout(message: Envelope) -> list[TextPart]:
        return [TextPart(text=message.parts[0].text.upper())]

    async def main() -> None:
        bus = MessageBus(MessageStore(Path(mkdtemp()) / "messages.sqlite"))
        bus.register(parse_address("agent:shouter"), shout)
        async with bus.serving():
            reply = await bus.request(
                Envelope(
                    sender=parse_address("agent:me"),
                    recipient=parse_address("agent:shouter"),
                    kind="request",
                    parts=[TextPart(text="hi")],
                ),
                timeout=10,
            )
        print(reply.parts[0].text)  # HI

    anyio.run(main)
    ```
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import anyio
from jsonschema import SchemaError
from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from aiorch.core.errors import ConfigurationError
from aiorch.core.settings import load_settings
from aiorch.tasks.messaging.embedded import EmbeddedTransport
from aiorch.tasks.messaging.envelope import (
    AgentAddress,
    CapabilityAddress,
    DataPart,
    Envelope,
    FilePart,
    PersonAddress,
    TextPart,
    TopicAddress,
    moment,
    parse_address,
)
from aiorch.tasks.messaging.errors import MessageRejected, NoReply, remote_error
from aiorch.tasks.messaging.people import aask_person
from aiorch.tasks.messaging.rabbitmq import RabbitTransport
from aiorch.tasks.messaging.routes import MessageRoutes
from aiorch.tasks.messaging.store import MessageStore, topic_matches
from aiorch.tasks.messaging.transport import Delivery, Subscription, Transport, Unroutable
from aiorch.tasks.resilience.problems import problem_from_exception

Handler = Callable[[Envelope], Awaitable[Sequence[TextPart | DataPart | FilePart] | None]]
PROBLEM_HEADER = "aiorch.problem"
ROUTED_BY_HEADER = "aiorch.routed-by"
MAX_BYTES = 1 << 20
_handling: ContextVar[AgentAddress | None] = ContextVar("aiorch_handling_agent", default=None)


def handling_agent() -> AgentAddress | None:
    """The agent whose handler runs in this context (None outside a handler)."""
    return _handling.get()


@dataclass
class _Participant:
    address: AgentAddress
    handler: Handler
    capabilities: list[str]
    subscriptions: list[Subscription]
    declared: bool = False
    queues: list[str] = field(default_factory=list)
    accepts: Validator | None = None

    def refusal(self, envelope: Envelope) -> str | None:
        """Why ``envelope``'s data fails the schema this participant accepts; None if not."""
        if self.accepts is None:
            return None
        found = [(i, p.data) for i, p in enumerate(envelope.parts) if isinstance(p, DataPart)]
        if not found:
            return (
                f"parts: {self.address} accepts a data part matching its schema and the "
                "message has none; send the data as a DataPart"
            )
        index, data = found[0]
        error = best_match(self.accepts.iter_errors(data))
        if error is None:
            return None
        path = "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in error.path)
        # The schema's rule, never the value (it may be a secret).
        rule = json.dumps(error.validator_value)[:120]
        return (
            f"parts[{index}].data{path}: fails {error.validator!r} ({rule}) of the schema "
            f"{self.address} accepts; send data that matches it"
        )

    def hears(self, envelope: Envelope) -> bool:
        """Whether this participant wants ``envelope`` (its own broadcasts only if it asked)."""
        recipient = envelope.recipient
        if not isinstance(recipient, TopicAddress) or envelope.sender != self.address:
            return True
        return any(
            subscription.hear_own and topic_matches(subscription.pattern, recipient.topic)
            for subscription in self.subscriptions
        )


class MessageBus:
    """Handlers of this process, served over a shared transport."""

    def __init__(
        self,
        transport: Transport | MessageStore,
        *,
        lease_seconds: float = 60.0,
        max_attempts: int = 5,
        retry_seconds: float = 1.0,
        max_bytes: int = MAX_BYTES,
        wait_seconds: float = 0.5,
        max_concurrent: int = 4,
        routes: Sequence[MessageRoutes] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.transport = (
            EmbeddedTransport(transport) if isinstance(transport, MessageStore) else transport
        )
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.retry_seconds = retry_seconds
        self.max_bytes = max_bytes
        self.wait_seconds = wait_seconds
        self.max_concurrent = max_concurrent
        self.clock = clock
        self._routes = {routing.address: routing for routing in routes}
        self._participants: list[_Participant] = []
        self._in_order: dict[tuple[str, str, int], anyio.Lock] = {}
        self._inbox: AgentAddress | None = None
        self._inbox_turn = anyio.Lock()
        self._waiting: dict[str, anyio.Event] = {}
        self._replies: dict[str, Envelope] = {}

    @classmethod
    def from_settings(cls, **options: Any) -> MessageBus:
        """A bus on the configured transport (RabbitMQ or the machine's embedded store).

        RabbitMQ when ``AIORCH_MESSAGE_BROKER_URL`` is set; ``options`` as for the
        constructor.
        """
        url = load_settings().message_broker_url
        if url is None:
            return cls(MessageStore.default(), **options)
        return cls(RabbitTransport(url.get_secret_value()), **options)

    def register(
        self,
        address: AgentAddress | str,
        handler: Handler,
        *,
        capabilities: Sequence[str] = (),
        topics: Sequence[str] = (),
        hear_own: bool = False,
        accepts: dict[str, Any] | None = None,
    ) -> None:
        """Serve ``address`` with ``handler``: its own messages, its capabilities', its topics'.

        ``accepts`` is a JSON Schema the message's data part must match: a message that
        does not is refused (a request's caller gets ``MessageRejected`` naming the
        field) and goes to the dead letters, without reaching the handler.

        Register every handler before the bus starts serving; the queues are declared on
        the transport by the bus's next operation.

        Raises:
            ConfigurationError: ``address`` is not an agent's (``agent:TYPE[/KEY]``), or
                ``accepts`` is not a JSON Schema.
        """
        validator = None
        if accepts is not None:
            schema_class = validator_for(accepts)
            try:
                schema_class.check_schema(accepts)
            except SchemaError as error:
                raise ConfigurationError(
                    f"accepts: not a JSON Schema ({error.message}); pass a schema such as "
                    '{"type": "object", "required": ["order_id"]}'
                ) from None
            validator = schema_class(accepts)
        if isinstance(address, str):
            parsed = parse_address(address)
            if not isinstance(parsed, AgentAddress):
                raise ConfigurationError(
                    f"address {address!r}: only agents handle messages; write agent:TYPE[/KEY]"
                )
            address = parsed
        queues = [str(address), *(str(CapabilityAddress(capability=name)) for name in capabilities)]
        subscriptions = [Subscription(pattern=pattern, hear_own=hear_own) for pattern in topics]
        self._participants.append(
            _Participant(
                address,
                handler,
                list(capabilities),
                subscriptions,
                queues=queues,
                accepts=validator,
            )
        )

    async def _declare(self) -> None:
        for participant in self._participants:
            if not participant.declared:
                await self.transport.declare(
                    str(participant.address), participant.capabilities, participant.subscriptions
                )
                participant.declared = True

    async def _reject(self, queue: str, envelope: Envelope, reason: str) -> MessageRejected:
        await self.transport.dead_letter(queue, envelope, reason, self.clock())
        return MessageRejected(reason)

    async def send(self, envelope: Envelope) -> None:
        """Queue ``envelope`` for its recipient(s).

        Raises:
            MessageRejected: it cannot be delivered (the reason names the field and the
                fix); it is in the dead letters.
        """
        await self._declare()
        envelope = await self._routed(envelope)
        queue = str(envelope.recipient)
        size = len(envelope.model_dump_json())
        if size > self.max_bytes:
            raise await self._reject(
                queue,
                envelope,
                f"parts: the message is {size} bytes, over the bus's limit of {self.max_bytes} "
                "(max_bytes); send large content as a file part with a url",
            )
        if envelope.expired(moment(self.clock())):
            raise await self._reject(
                queue, envelope, "expires_at: the message expired before it was sent"
            )
        if isinstance(envelope.recipient, PersonAddress):
            raise await self._reject(
                queue,
                envelope,
                "recipient: a person answers requests only, inside a flow run; use "
                "bus.request (or aask_person), not send",
            )
        try:
            await self.transport.publish(envelope, self.clock())
        except Unroutable as unroutable:
            raise await self._reject(unroutable.queue, envelope, unroutable.reason) from None

    async def _routed(self, envelope: Envelope) -> Envelope:
        address = str(envelope.recipient)
        routing = self._routes.get(address)
        if routing is None:
            return envelope
        destination = routing.destination(envelope)
        if destination is None:
            raise await self._reject(
                address,
                envelope,
                f"recipient: no rule of the routes for {address} matched and they have no "
                "default; add a rule, or set the routes' default",
            )
        if envelope.kind == "request" and isinstance(destination, TopicAddress):
            raise await self._reject(
                address,
                envelope,
                f"recipient: the routes for {address} send this request to {destination}, a "
                "topic, which cannot reply; route requests to an agent or a capability",
            )
        headers = {**envelope.headers, ROUTED_BY_HEADER: address}
        return envelope.model_copy(update={"recipient": destination, "headers": headers})

    async def request(self, envelope: Envelope, timeout: float) -> Envelope:
        """Send a request and wait for its reply.

        Raises:
            NoReply: nothing came back within ``timeout`` seconds.
            MessageRejected: the request could not be delivered.
            AiorchError: the handler's error, as its own class.

        A request to ``person:NAME`` pauses the flow run until the person answers in the
        Prefect UI (:func:`~aiorch.tasks.messaging.people.aask_person`).
        """
        if isinstance(envelope.recipient, PersonAddress):
            return await aask_person(envelope, timeout=max(1, round(timeout)))
        inbox = await self._reply_inbox()
        sent = envelope.model_copy(update={"reply_to": inbox})
        arrived = anyio.Event()
        self._waiting[sent.id] = arrived
        try:
            await self.send(sent)
            reply = await self._await_reply(str(inbox), sent.id, time.monotonic() + timeout)
        finally:
            self._waiting.pop(sent.id, None)
            self._replies.pop(sent.id, None)
        if reply is None:
            raise NoReply(
                f"no reply to message {sent.id} from {sent.recipient} within {timeout:g} s"
            )
        return _raise_problem(reply)

    async def _reply_inbox(self) -> AgentAddress:
        # One inbox per bus, declared again on each use: a transport that reconnected
        # (a new event loop, a restarted broker) creates it anew, others do nothing.
        if self._inbox is None:
            self._inbox = AgentAddress(type="rpc", key=uuid4().hex)
        await self.transport.declare(str(self._inbox), temporary=True)
        return self._inbox

    async def _await_reply(self, inbox: str, request_id: str, deadline: float) -> Envelope | None:
        """The reply to ``request_id``; whoever holds the inbox hands out the others'."""
        while request_id not in self._replies:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if self._inbox_turn.locked():
                with anyio.move_on_after(min(remaining, self.wait_seconds)):
                    await self._waiting[request_id].wait()
                continue
            async with self._inbox_turn:
                delivery = await self._receive([inbox], min(remaining, self.wait_seconds))
                if delivery is None:
                    continue
                await self.transport.ack(delivery, self.clock())
                answered = delivery.envelope.correlation_id or ""
                if answered in self._waiting:  # else a late reply to a request given up
                    self._replies[answered] = delivery.envelope
                    self._waiting[answered].set()
        return self._replies[request_id]

    async def close(self) -> None:
        """Remove this bus's reply inbox and close the transport's connections."""
        if self._inbox is not None:
            await self.transport.forget(str(self._inbox))
            self._inbox = None
        await self.transport.close()

    async def _receive(self, queues: list[str], wait: float) -> Delivery | None:
        return await self.transport.receive(
            queues, self.clock(), wait, self.lease_seconds, self.max_attempts
        )

    async def serve_once(self) -> bool:
        """Handle at most one message per participant; whether any was handled."""
        await self._declare()
        handled = False
        for participant in self._participants:
            delivery = await self._receive(participant.queues, 0)
            if delivery is not None:
                await self._handle(participant, delivery)
                handled = True
        return handled

    async def _handle(self, participant: _Participant, delivery: Delivery) -> None:
        envelope = delivery.envelope
        key = (delivery.queue, str(envelope.sender), envelope.priority)
        lock = self._in_order.get(key)
        if lock is None:
            # Uncontended (the common case) it takes no checkpoint.
            lock = self._in_order[key] = anyio.Lock(fast_acquire=True)
        async with lock:
            try:
                await self._handle_in_order(participant, delivery)
            finally:
                if not lock.statistics().tasks_waiting:
                    self._in_order.pop(key, None)

    async def _handle_in_order(self, participant: _Participant, delivery: Delivery) -> None:
        envelope = delivery.envelope
        if not participant.hears(envelope) or await self.transport.seen(delivery):
            await self.transport.ack(delivery, self.clock())
            return
        refusal = participant.refusal(envelope)
        if refusal is not None:
            if envelope.kind == "request":
                problem = problem_from_exception(MessageRejected(refusal))
                problem_part = DataPart(data=problem.model_dump(mode="json", exclude_none=True))
                await self._reply(
                    participant, envelope, [problem_part], {PROBLEM_HEADER: problem.type}
                )
            await self.transport.bury(delivery, refusal, self.clock())
            return
        while True:
            try:
                parts = await _call(participant, envelope)
            except Exception as error:
                problem = problem_from_exception(error)
                if problem.retryable and delivery.attempts < self.max_attempts:
                    until = self.clock() + self.retry_seconds + self.lease_seconds
                    delivery = await self.transport.extend(delivery, problem.detail, until)
                    await anyio.sleep(self.retry_seconds)
                    continue
                if envelope.kind != "request":
                    reason = (
                        f"delivery failed {delivery.attempts} times; last error: {problem.detail}"
                        if problem.retryable
                        else f"the handler of {participant.address} refused it: {problem.detail}"
                    )
                    await self.transport.bury(delivery, reason, self.clock())
                    return
                problem_part = DataPart(data=problem.model_dump(mode="json", exclude_none=True))
                await self._reply(
                    participant, envelope, [problem_part], {PROBLEM_HEADER: problem.type}
                )
            else:
                if envelope.kind == "request":
                    await self._reply(
                        participant, envelope, list(parts or [DataPart(data=None)]), {}
                    )
            await self.transport.ack(delivery, self.clock())
            return

    async def _reply(
        self,
        participant: _Participant,
        request: Envelope,
        parts: list[TextPart | DataPart | FilePart],
        headers: dict[str, str],
    ) -> None:
        # From the agent that answered, also when the request went to a capability.
        reply = request.reply(
            parts, sender=participant.address, headers={**request.headers, **headers}
        )
        # A reply that cannot be delivered is in the dead letters, with the reason; the
        # request itself was handled.
        try:
            await self.send(reply)
        except MessageRejected:
            return

    async def serve(self) -> None:
        """Handle messages until cancelled, ``max_concurrent`` at a time.

        Each participant receives on its own; a sender's next message to a recipient is
        handled only once the one before it is done.
        """
        await self._declare()
        slots = anyio.Semaphore(self.max_concurrent)

        async def handle(participant: _Participant, delivery: Delivery) -> None:
            try:
                await self._handle(participant, delivery)
            finally:
                slots.release()

        async def consume(participant: _Participant, group: anyio.abc.TaskGroup) -> None:
            while True:
                delivery = await self._receive(participant.queues, self.wait_seconds)
                if delivery is not None:
                    await slots.acquire()
                    group.start_soon(handle, participant, delivery)

        async with anyio.create_task_group() as group:
            for participant in self._participants:
                group.start_soon(consume, participant, group)

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """Serve the registered handlers in the background for the block."""
        await self._declare()
        failed: Exception | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(self.serve)
            try:
                yield
            except Exception as error:
                # Raised by the caller's block: re-raised as itself, not in a group.
                failed = error
            finally:
                group.cancel_scope.cancel()
        if failed is not None:
            raise failed

    async def redeliver(self, seq: int) -> Envelope:
        """Send dead letter ``seq`` again (to its recipient, as it was).

        Raises:
            ConfigurationError: there is no such dead letter.
            MessageRejected: it still cannot be delivered (it is a dead letter again).
        """
        letter = await self.transport.take_dead_letter(seq)
        if letter is None:
            raise ConfigurationError(
                f"dead letter {seq} does not exist; `aiorch messages dead-letters` lists them"
            )
        await self.send(letter.envelope)
        return letter.envelope


async def _call(
    participant: _Participant, envelope: Envelope
) -> Sequence[TextPart | DataPart | FilePart] | None:
    token = _handling.set(participant.address)
    try:
        return await participant.handler(envelope)
    finally:
        _handling.reset(token)


def _raise_problem(reply: Envelope) -> Envelope:
    if PROBLEM_HEADER not in reply.headers:
        return reply
    part = reply.parts[0]
    problem = part.data if isinstance(part, DataPart) and isinstance(part.data, dict) else {}
    raise remote_error(dict(problem))
