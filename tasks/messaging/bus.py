"""The embedded message bus: direct messages, RPC, broadcast and capability routing.

A :class:`MessageBus` serves the handlers registered in this process from a
:class:`~aiorch.tasks.messaging.store.MessageStore` (one SQLite file), which every
process on the machine may share; delivery follows the store's rules (at least once,
priority with aging, order per sender and recipient).

- ``send`` queues an envelope for an agent (``agent:TYPE/KEY``), for any one agent
  offering a capability (``capability:NAME``), or for every subscriber of a topic
  (``topic:NAME``, events only; subscriptions are AMQP-style patterns, and a publisher
  hears its own events only if it asked to).
- ``request`` sends a request and waits for its reply; a handler's typed error comes
  back raised as that error (:func:`~aiorch.tasks.messaging.errors.remote_error`).
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

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import uuid4

import anyio

from aiorch.core.errors import ConfigurationError
from aiorch.tasks.messaging.envelope import (
    AgentAddress,
    CapabilityAddress,
    DataPart,
    Envelope,
    FilePart,
    PersonAddress,
    TextPart,
    TopicAddress,
    parse_address,
)
from aiorch.tasks.messaging.errors import MessageRejected, NoReply, remote_error
from aiorch.tasks.messaging.store import Leased, MessageStore
from aiorch.tasks.resilience.problems import problem_from_exception

Handler = Callable[[Envelope], Awaitable[Sequence[TextPart | DataPart | FilePart] | None]]
PROBLEM_HEADER = "aiorch.problem"
MAX_BYTES = 1 << 20


@dataclass
class _Participant:
    address: AgentAddress
    handler: Handler
    queues: list[str] = field(default_factory=list)


class MessageBus:
    """Handlers of this process, served from a shared message store."""

    def __init__(
        self,
        store: MessageStore,
        *,
        lease_seconds: float = 60.0,
        max_attempts: int = 5,
        retry_seconds: float = 1.0,
        max_bytes: int = MAX_BYTES,
        poll_seconds: float = 0.02,
        max_concurrent: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.retry_seconds = retry_seconds
        self.max_bytes = max_bytes
        self.poll_seconds = poll_seconds
        self.max_concurrent = max_concurrent
        self.clock = clock
        self._participants: list[_Participant] = []

    def register(
        self,
        address: AgentAddress | str,
        handler: Handler,
        *,
        capabilities: Sequence[str] = (),
        topics: Sequence[str] = (),
        hear_own: bool = False,
    ) -> None:
        """Serve ``address`` with ``handler``: its own messages, its capabilities', its topics'.

        Raises:
            ConfigurationError: ``address`` is not an agent's (``agent:TYPE[/KEY]``).
        """
        if isinstance(address, str):
            parsed = parse_address(address)
            if not isinstance(parsed, AgentAddress):
                raise ConfigurationError(
                    f"address {address!r}: only agents handle messages; write agent:TYPE[/KEY]"
                )
            address = parsed
        queue = str(address)
        self.store.register(queue, list(capabilities))
        for pattern in topics:
            self.store.subscribe(queue, pattern, hear_own)
        queues = [queue, *(str(CapabilityAddress(capability=name)) for name in capabilities)]
        self._participants.append(_Participant(address, handler, queues))

    def _reject(self, envelope: Envelope, reason: str) -> MessageRejected:
        self.store.dead_letter(str(envelope.recipient), envelope, reason, self.clock())
        return MessageRejected(reason)

    def _queues(self, envelope: Envelope) -> list[str]:
        recipient = envelope.recipient
        size = len(envelope.model_dump_json())
        if size > self.max_bytes:
            raise self._reject(
                envelope,
                f"parts: the message is {size} bytes, over the bus's limit of {self.max_bytes} "
                "(max_bytes); send large content as a file part with a url",
            )
        if envelope.expired(_moment(self.clock())):
            raise self._reject(envelope, "expires_at: the message expired before it was sent")
        if isinstance(recipient, TopicAddress):
            return self.store.subscribers(recipient.topic, str(envelope.sender))
        if isinstance(recipient, CapabilityAddress):
            if not self.store.offered(recipient.capability):
                raise self._reject(
                    envelope,
                    f"recipient: no agent offers capability {recipient.capability!r}; register "
                    "one with capabilities=[...], or address an agent",
                )
            return [str(recipient)]
        if isinstance(recipient, PersonAddress):
            raise self._reject(
                envelope, "recipient: a person cannot be reached through the message bus"
            )
        if not self.store.registered(str(recipient)):
            raise self._reject(
                envelope,
                f"recipient: no agent {recipient} is registered on this bus; register it, or "
                "address a capability",
            )
        return [str(recipient)]

    async def send(self, envelope: Envelope) -> None:
        """Queue ``envelope`` for its recipient(s).

        Raises:
            MessageRejected: it cannot be delivered (the reason names the field and the
                fix); it is in the dead letters.
        """
        queues = await anyio.to_thread.run_sync(self._queues, envelope)
        for queue in queues:
            await anyio.to_thread.run_sync(self.store.enqueue, queue, envelope, self.clock())

    async def request(self, envelope: Envelope, timeout: float) -> Envelope:
        """Send a request and wait for its reply.

        Raises:
            NoReply: nothing came back within ``timeout`` seconds.
            MessageRejected: the request could not be delivered.
            AiorchError: the handler's error, as its own class.
        """
        reply_to = AgentAddress(type="rpc", key=uuid4().hex)
        inbox = str(reply_to)
        await anyio.to_thread.run_sync(self.store.register, inbox, [])
        try:
            sent = envelope.model_copy(update={"reply_to": reply_to})
            await self.send(sent)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                leased = await anyio.to_thread.run_sync(self._lease, [inbox])
                if leased is None:
                    await anyio.sleep(self.poll_seconds)
                    continue
                await anyio.to_thread.run_sync(self.store.ack, leased, self.clock())
                if leased.envelope.correlation_id == sent.id:
                    return _raise_problem(leased.envelope)
        finally:
            await anyio.to_thread.run_sync(self.store.unregister, inbox)
        raise NoReply(f"no reply to message {sent.id} from {sent.recipient} within {timeout:g} s")

    def _lease(self, queues: list[str]) -> Leased | None:
        return self.store.lease(queues, self.clock(), self.lease_seconds, self.max_attempts)

    async def serve_once(self) -> bool:
        """Handle at most one message per participant; whether any was handled."""
        handled = False
        for participant in self._participants:
            leased = await anyio.to_thread.run_sync(self._lease, participant.queues)
            if leased is not None:
                await self._handle(participant, leased)
                handled = True
        return handled

    async def _handle(self, participant: _Participant, leased: Leased) -> None:
        envelope = leased.envelope
        try:
            parts = await participant.handler(envelope)
        except Exception as error:
            problem = problem_from_exception(error)
            if problem.retryable and leased.attempts < self.max_attempts:
                retry_at = self.clock() + self.retry_seconds
                await anyio.to_thread.run_sync(self.store.release, leased, problem.detail, retry_at)
                return
            if envelope.kind == "request":
                await self._reply(
                    envelope,
                    [DataPart(data=problem.model_dump(mode="json", exclude_none=True))],
                    {PROBLEM_HEADER: problem.type},
                )
            else:
                reason = (
                    f"delivery failed {leased.attempts} times; last error: {problem.detail}"
                    if problem.retryable
                    else f"the handler of {participant.address} refused it: {problem.detail}"
                )
                await anyio.to_thread.run_sync(
                    self.store.dead_letter, leased.queue, envelope, reason, self.clock()
                )
        else:
            if envelope.kind == "request":
                await self._reply(envelope, list(parts or [DataPart(data=None)]), {})
        await anyio.to_thread.run_sync(self.store.ack, leased, self.clock())

    async def _reply(
        self,
        request: Envelope,
        parts: list[TextPart | DataPart | FilePart],
        headers: dict[str, str],
    ) -> None:
        reply = request.reply(parts, headers={**request.headers, **headers})
        # A reply that cannot be delivered is in the dead letters, with the reason; the
        # request itself was handled.
        with contextlib.suppress(MessageRejected):
            await self.send(reply)

    async def serve(self) -> None:
        """Handle messages until cancelled, ``max_concurrent`` at a time.

        Handling several at once keeps every promise: the store hands out a sender's next
        message only once the one before it is done. Polls every ``poll_seconds`` while
        idle.
        """
        slots = anyio.Semaphore(self.max_concurrent)

        async def handle(participant: _Participant, leased: Leased) -> None:
            try:
                await self._handle(participant, leased)
            finally:
                slots.release()

        async with anyio.create_task_group() as group:
            while True:
                found = False
                for participant in self._participants:
                    await slots.acquire()
                    leased = await anyio.to_thread.run_sync(self._lease, participant.queues)
                    if leased is None:
                        slots.release()
                        continue
                    found = True
                    group.start_soon(handle, participant, leased)
                if not found:
                    await anyio.sleep(self.poll_seconds)

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """Serve the registered handlers in the background for the block."""
        async with anyio.create_task_group() as group:
            group.start_soon(self.serve)
            try:
                yield
            finally:
                group.cancel_scope.cancel()

    async def redeliver(self, seq: int) -> Envelope:
        """Send dead letter ``seq`` again (to its recipient, as it was).

        Raises:
            ConfigurationError: there is no such dead letter.
            MessageRejected: it still cannot be delivered (it is a dead letter again).
        """
        letter = await anyio.to_thread.run_sync(self.store.take_dead_letter, seq)
        if letter is None:
            raise ConfigurationError(
                f"dead letter {seq} does not exist; `aiorch messages dead-letters` lists them"
            )
        await self.send(letter.envelope)
        return letter.envelope


def _moment(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def _raise_problem(reply: Envelope) -> Envelope:
    if PROBLEM_HEADER not in reply.headers:
        return reply
    part = reply.parts[0]
    problem = part.data if isinstance(part, DataPart) and isinstance(part.data, dict) else {}
    raise remote_error(dict(problem))
