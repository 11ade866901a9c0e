"""The embedded transport: the bus on one SQLite file, shared by a machine's processes.

No server to run. Delivery follows :mod:`aiorch.tasks.messaging.store`'s rules (at least
once, priority with aging, order per sender and recipient held across consumers). Move
to :class:`~aiorch.tasks.messaging.rabbitmq.RabbitTransport` when participants run on
more than one machine.

Example:
    ```python
    from pathlib import Path
    from tempfile import mkdtemp

    from aiorch.tasks.messaging.bus import MessageBus
    from aiorch.tasks.messaging.embedded import EmbeddedTransport
    from aiorch.tasks.messaging.store import MessageStore

    bus = MessageBus(EmbeddedTransport(MessageStore(Path(mkdtemp()) / "messages.sqlite")))
    ```
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import override

import anyio

from aiorch.tasks.messaging.envelope import CapabilityAddress, Envelope, TopicAddress
from aiorch.tasks.messaging.store import MessageStore
from aiorch.tasks.messaging.transport import (
    Delivery,
    Subscription,
    Transport,
    Unroutable,
)


class EmbeddedTransport(Transport):
    """Queues in a :class:`MessageStore`, polled every ``poll_seconds`` while waiting."""

    def __init__(self, store: MessageStore, *, poll_seconds: float = 0.02) -> None:
        self.store = self.ledger = store
        self.poll_seconds = poll_seconds

    @override
    async def declare(
        self,
        queue: str,
        capabilities: Sequence[str] = (),
        subscriptions: Sequence[Subscription] = (),
        *,
        temporary: bool = False,
    ) -> None:
        await anyio.to_thread.run_sync(self.store.register, queue, list(capabilities))
        for subscription in subscriptions:
            await anyio.to_thread.run_sync(
                self.store.subscribe, queue, subscription.pattern, subscription.hear_own
            )

    @override
    async def forget(self, queue: str) -> None:
        await anyio.to_thread.run_sync(self.store.unregister, queue)

    def _queues(self, envelope: Envelope) -> list[str]:
        recipient = envelope.recipient
        if isinstance(recipient, TopicAddress):
            return self.store.subscribers(recipient.topic, str(envelope.sender))
        if isinstance(recipient, CapabilityAddress):
            if not self.store.offered(recipient.capability):
                raise Unroutable(
                    str(recipient),
                    f"recipient: no agent offers capability {recipient.capability!r}; register "
                    "one with capabilities=[...], or address an agent",
                )
            return [str(recipient)]
        if not self.store.registered(str(recipient)):
            raise Unroutable(
                str(recipient),
                f"recipient: no agent {recipient} is registered on this bus; register it, or "
                "address a capability",
            )
        return [str(recipient)]

    def _publish(self, envelope: Envelope, now: float) -> None:
        for queue in self._queues(envelope):
            self.store.enqueue(queue, envelope, now)

    @override
    async def publish(self, envelope: Envelope, now: float) -> None:
        await anyio.to_thread.run_sync(self._publish, envelope, now)

    @override
    async def receive(
        self,
        queues: Sequence[str],
        now: float,
        wait: float,
        lease_seconds: float,
        max_attempts: int,
    ) -> Delivery | None:
        deadline = time.monotonic() + wait
        while True:
            delivery = await anyio.to_thread.run_sync(
                self.store.lease, list(queues), now, lease_seconds, max_attempts
            )
            if delivery is not None or time.monotonic() >= deadline:
                return delivery
            await anyio.sleep(self.poll_seconds)

    @override
    async def seen(self, delivery: Delivery) -> bool:
        # The store queues an id once and never hands out one already handled.
        return False

    @override
    async def extend(self, delivery: Delivery, error: str, until: float) -> Delivery:
        return await anyio.to_thread.run_sync(self.store.extend, delivery, error, until)

    @override
    async def ack(self, delivery: Delivery, now: float) -> None:
        await anyio.to_thread.run_sync(self.store.ack, delivery, now)

    @override
    async def bury(self, delivery: Delivery, reason: str, now: float) -> None:
        await anyio.to_thread.run_sync(self.store.bury, delivery, reason, now)

    @override
    async def depth(self, queue: str) -> int:
        return await anyio.to_thread.run_sync(self.store.depth, queue)
