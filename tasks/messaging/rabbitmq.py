"""The RabbitMQ transport: the bus across machines, on a real broker (aio-pika).

The protocol maps onto AMQP 0-9-1 directly:

- one durable **direct exchange**, ``aiorch.direct``, routes to queues named after
  addresses: ``agent:TYPE[/KEY]`` (a single active consumer, so a sender's messages
  are handled in order even with several processes serving one agent) and
  ``capability:NAME`` (competing consumers: every agent offering it reads the queue);
- one durable **topic exchange**, ``aiorch.topic``: a subscription binds the agent's
  queue with its pattern (AMQP ``*``/``#``, as in the embedded bus);
- queues are durable with ``x-max-priority`` 9: the broker hands out higher priorities
  first (strictly; the embedded bus adds aging, the broker cannot);
- messages are persistent and published with **publisher confirms** and ``mandatory``,
  so a message no queue takes is reported (and dead-lettered) instead of lost;
- a request's reply inbox is an exclusive, auto-deleted queue.

The broker holds the queues; a ledger (a :class:`~aiorch.tasks.messaging.store.
MessageStore`, the machine's by default) holds the ids already handled and the dead
letters with their reasons, so a message redelivered after a broker restart or a lost
connection is acknowledged without being handled twice. The connection is aio-pika's
robust one: it reconnects and restores queues, bindings and consumers by itself.

Example:
    ```python
    from aiorch.tasks.messaging.bus import MessageBus
    from aiorch.tasks.messaging.rabbitmq import RabbitTransport

    bus = MessageBus(RabbitTransport("amqp://guest:guest@127.0.0.1:5672/"))
    ```
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, override

import anyio
from pydantic import ValidationError

from aiorch.core.errors import ConfigurationError
from aiorch.tasks.messaging.envelope import (
    AgentAddress,
    Envelope,
    TextPart,
    TopicAddress,
    moment,
    parse_address,
)
from aiorch.tasks.messaging.rabbitmq_acks import Acknowledgements
from aiorch.tasks.messaging.store import MessageStore
from aiorch.tasks.messaging.transport import (
    Delivery,
    Subscription,
    Transport,
    Unroutable,
)

if TYPE_CHECKING:
    from aio_pika.abc import (
        AbstractChannel,
        AbstractExchange,
        AbstractIncomingMessage,
        AbstractQueue,
        AbstractRobustConnection,
    )

DIRECT_EXCHANGE = "aiorch.direct"
TOPIC_EXCHANGE = "aiorch.topic"
MAX_PRIORITY = 9
MALFORMED_KEPT_CHARS = 10_000


class _Connected:
    """One event loop's connection, channel, exchanges and consumers."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        connection: AbstractRobustConnection,
        channel: AbstractChannel,
        direct: AbstractExchange,
        topic: AbstractExchange,
    ) -> None:
        self.loop = loop
        self.connection = connection
        self.channel = channel
        self.direct = direct
        self.topic = topic
        self.queues: dict[str, AbstractQueue] = {}
        self.temporary: set[str] = set()  # reply inboxes: exclusive, gone with the connection
        self.buffers: dict[str, asyncio.Queue[tuple[str, AbstractIncomingMessage]]] = {}
        self.consumers: dict[str, str] = {}
        self.pending: dict[int, tuple[str, AbstractIncomingMessage]] = {}
        # Handled, not yet in the ledger: written in one transaction per batch, and
        # acknowledged to the broker only once written.
        self.unwritten: list[tuple[str, str, float, AbstractIncomingMessage | None]] = []
        self.writer: asyncio.Task[None] | None = None
        self.handled: set[tuple[str, str]] = set()  # unwritten and being written
        self.acks = Acknowledgements()


class RabbitTransport(Transport):
    """Queues on a RabbitMQ broker; handled ids and dead letters in ``ledger``."""

    ledger: MessageStore

    def __init__(
        self,
        url: str,
        *,
        ledger: MessageStore | None = None,
        prefetch: int = 4,
    ) -> None:
        self._url = url
        self.ledger = ledger if ledger is not None else MessageStore.default()
        self.prefetch = prefetch
        self._connected: _Connected | None = None
        self._receipts = itertools.count(1)

    def __repr__(self) -> str:
        # The URL may hold the broker's password.
        return f"RabbitTransport(prefetch={self.prefetch})"

    async def _link(self) -> _Connected:
        loop = asyncio.get_running_loop()
        if self._connected is not None and self._connected.loop is loop:
            return self._connected
        import aio_pika

        try:
            connection = await aio_pika.connect_robust(self._url)
        except (OSError, aio_pika.exceptions.AMQPConnectionError) as error:
            raise ConfigurationError(
                f"the message broker (AIORCH_MESSAGE_BROKER_URL) did not accept a connection: "
                f"{type(error).__name__}; check that RabbitMQ runs there and the credentials"
            ) from None
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.set_qos(prefetch_count=self.prefetch)
        direct = await channel.declare_exchange(
            DIRECT_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
        )
        topic = await channel.declare_exchange(
            TOPIC_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        self._connected = _Connected(loop, connection, channel, direct, topic)
        return self._connected

    async def _queue(self, link: _Connected, name: str, *, temporary: bool) -> AbstractQueue:
        if name in link.queues:
            return link.queues[name]
        arguments: dict[str, Any] = {"x-max-priority": MAX_PRIORITY}
        if name.startswith("agent:") and not temporary:
            arguments["x-single-active-consumer"] = True
        queue = await link.channel.declare_queue(
            name,
            durable=not temporary,
            exclusive=temporary,
            auto_delete=temporary,
            arguments=arguments,
        )
        await queue.bind(link.direct, routing_key=name)
        link.queues[name] = queue
        if temporary:
            link.temporary.add(name)
        return queue

    @override
    async def declare(
        self,
        queue: str,
        capabilities: Sequence[str] = (),
        subscriptions: Sequence[Subscription] = (),
        *,
        temporary: bool = False,
    ) -> None:
        link = await self._link()
        declared = await self._queue(link, queue, temporary=temporary)
        for capability in capabilities:
            await self._queue(link, f"capability:{capability}", temporary=False)
        for subscription in subscriptions:
            await declared.bind(link.topic, routing_key=subscription.pattern)

    @override
    async def forget(self, queue: str) -> None:
        link = await self._link()
        declared = link.queues.pop(queue, None)
        tag = link.consumers.pop(queue, None)
        link.temporary.discard(queue)
        if declared is not None:
            if tag is not None:
                await declared.cancel(tag)
            await declared.delete(if_unused=False, if_empty=False)
        # Deleted with their queue: nothing will settle them.
        buffer = link.buffers.pop(queue, None)
        while buffer is not None and not buffer.empty():
            link.acks.abandon(buffer.get_nowait()[1])

    @override
    async def publish(self, envelope: Envelope, now: float) -> None:
        import aio_pika

        link = await self._link()
        message = aio_pika.Message(
            envelope.model_dump_json().encode(),
            message_id=envelope.id,
            priority=envelope.priority,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        if isinstance(envelope.recipient, TopicAddress):
            await link.topic.publish(message, routing_key=envelope.recipient.topic)
            return
        name = str(envelope.recipient)
        try:
            await link.direct.publish(message, routing_key=name, mandatory=True)
        except aio_pika.exceptions.DeliveryError:
            kind = "capability" if name.startswith("capability:") else "agent"
            fix = (
                "register one with capabilities=[...], or address an agent"
                if kind == "capability"
                else "register it, or address a capability"
            )
            raise Unroutable(
                name, f"recipient: no queue for {name} on the broker (no such {kind}); {fix}"
            ) from None

    async def _buffer(
        self, link: _Connected, queues: Sequence[str]
    ) -> asyncio.Queue[tuple[str, AbstractIncomingMessage]]:
        key = "\n".join(queues)
        buffer = link.buffers.get(key)
        if buffer is None:
            buffer = link.buffers[key] = asyncio.Queue()
            for name in queues:
                queue = await self._queue(link, name, temporary=name in link.temporary)
                link.consumers[name] = await queue.consume(
                    _into(link.acks, buffer, name), no_ack=False
                )
        return buffer

    @override
    async def receive(
        self,
        queues: Sequence[str],
        now: float,
        wait: float,
        lease_seconds: float,
        max_attempts: int,
    ) -> Delivery | None:
        link = await self._link()
        buffer = await self._buffer(link, queues)
        deadline = time.monotonic() + wait
        while True:
            # Under load the buffer is rarely empty: no cancel scope for those.
            if buffer.empty():
                arrived = None
                with anyio.move_on_after(deadline - time.monotonic()):
                    arrived = await buffer.get()
                if arrived is None:
                    return None
            else:
                arrived = buffer.get_nowait()
            delivery = await self._delivery(link, *arrived, now)
            if delivery is not None:
                return delivery

    async def _delivery(
        self, link: _Connected, queue: str, message: AbstractIncomingMessage, now: float
    ) -> Delivery | None:
        """``message`` as a delivery; None if it went to the dead letters instead."""
        try:
            envelope = Envelope.model_validate_json(message.body)
        except ValidationError as invalid:
            await self._bury_malformed(link, queue, message, invalid, now)
            return None
        receipt = next(self._receipts)
        link.pending[receipt] = (queue, message)
        delivery = Delivery(
            queue=queue,
            envelope=envelope,
            attempts=2 if message.redelivered else 1,
            receipt=receipt,
        )
        if envelope.expired(moment(now)):
            await self.bury(delivery, "expired", now)
            return None
        return delivery

    async def _bury_malformed(
        self,
        link: _Connected,
        queue: str,
        message: AbstractIncomingMessage,
        invalid: ValidationError,
        now: float,
    ) -> None:
        # A foreign publisher's message: kept as text, with what is wrong with it.
        first = invalid.errors(include_input=False)[0]
        field = ".".join(str(part) for part in first["loc"]) or "the body"
        reason = (
            f"malformed envelope: {field}: {first['msg']}; publish an aiorch.message/v1 "
            "envelope (its JSON Schema is in docs/messaging.md)"
        )
        kept = Envelope(
            sender=AgentAddress(type="unknown"),
            recipient=parse_address(queue),
            kind="event",
            parts=[TextPart(text=message.body.decode(errors="replace")[:MALFORMED_KEPT_CHARS])],
        )
        await anyio.to_thread.run_sync(self.ledger.dead_letter, queue, kept, reason, now)
        await link.acks.settle([message], last=True)

    @override
    async def seen(self, delivery: Delivery) -> bool:
        # Read on the loop itself: a WAL reader takes no lock and never waits, and a
        # thread hop would cost more than the read.
        link = await self._link()
        key = (delivery.queue, delivery.envelope.id)
        return key in link.handled or self.ledger.handled(*key)

    @override
    async def extend(self, delivery: Delivery, error: str, until: float) -> Delivery:
        # The broker keeps an unacknowledged message with its consumer for as long as the
        # connection lives: nothing to renew.
        return delivery.model_copy(update={"attempts": delivery.attempts + 1})

    @override
    async def ack(self, delivery: Delivery, now: float) -> None:
        link = await self._link()
        held = link.pending.pop(delivery.receipt, None)
        link.unwritten.append(
            (delivery.queue, delivery.envelope.id, now, held[1] if held else None)
        )
        link.handled.add((delivery.queue, delivery.envelope.id))
        if link.writer is None or link.writer.done():
            link.writer = asyncio.create_task(self._write(link))

    async def _write(self, link: _Connected) -> None:
        # Group commit: every acknowledgement that came in while the last batch was
        # written goes into the next one, so a burst costs one ledger write, not one each.
        while link.unwritten:
            batch, link.unwritten = link.unwritten, []
            # A reply inbox needs no record: it lives as long as the connection, and a
            # reply that comes twice is dropped by the bus as one nobody waits for.
            rows = [
                (queue, message_id, now)
                for queue, message_id, now, _ in batch
                if queue not in link.temporary
            ]
            if rows:
                await anyio.to_thread.run_sync(self.ledger.remember_all, rows)
            for queue, message_id, _, _ in batch:
                link.handled.discard((queue, message_id))
            settled = [message for *_, message in batch if message is not None]
            await link.acks.settle(settled, last=not link.unwritten)

    @override
    async def bury(self, delivery: Delivery, reason: str, now: float) -> None:
        link = await self._link()
        held = link.pending.pop(delivery.receipt, None)
        await anyio.to_thread.run_sync(
            self.ledger.dead_letter, delivery.queue, delivery.envelope, reason, now
        )
        if held is not None:
            await link.acks.settle([held[1]], last=True)

    @override
    async def depth(self, queue: str) -> int:
        link = await self._link()
        waiting = sum(1 for name, _ in link.pending.values() if name == queue)
        # A passive declaration counts what the broker holds ready, not what consumers hold.
        channel = await link.connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
            ready = declared.declaration_result.message_count or 0
        finally:
            await channel.close()
        return ready + waiting

    @override
    async def close(self) -> None:
        link, self._connected = self._connected, None
        if link is not None and link.loop is asyncio.get_running_loop():
            if link.writer is not None:
                await link.writer
            await link.connection.close()


def _into(
    acks: Acknowledgements,
    buffer: asyncio.Queue[tuple[str, AbstractIncomingMessage]],
    queue: str,
) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
    async def put(message: AbstractIncomingMessage) -> None:
        acks.delivered(message)
        await buffer.put((queue, message))

    return put
