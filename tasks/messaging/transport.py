"""What the bus needs from a transport: queues, routing, leases and dead letters.

A :class:`~aiorch.tasks.messaging.bus.MessageBus` keeps the protocol (size and expiry
checks, replies, typed errors, retries, order while handling several messages at once);
a transport moves envelopes between queues. Two ship with aiorch:

- :class:`~aiorch.tasks.messaging.embedded.EmbeddedTransport`: one SQLite file shared by
  the processes of one machine, no server to run.
- :class:`~aiorch.tasks.messaging.rabbitmq.RabbitTransport`: a RabbitMQ broker, for
  participants on many machines.

Queues are named after addresses: ``agent:TYPE[/KEY]`` for one agent (it also receives
its topic subscriptions) and ``capability:NAME`` for the agents offering a capability
(competing consumers). ``tests/test_messaging_contract.py`` runs one suite against every
transport.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol

import anyio

from aiorch.core.models import AiorchModel
from aiorch.tasks.messaging.envelope import Envelope


class Subscription(AiorchModel):
    """Events on topics matching ``pattern`` (AMQP ``*``/``#``) go to a participant."""

    pattern: str
    hear_own: bool = False


class Delivery(AiorchModel):
    """A message handed to one consumer until it is acknowledged or buried."""

    queue: str
    envelope: Envelope
    attempts: int
    receipt: int


class DeadLetter(AiorchModel):
    """A message that will not be delivered, and why."""

    seq: int
    queue: str
    id: str
    reason: str
    at: float
    envelope: Envelope


class Unroutable(Exception):
    """No queue takes this message; ``reason`` names the field and the fix."""

    def __init__(self, queue: str, reason: str) -> None:
        super().__init__(reason)
        self.queue = queue
        self.reason = reason


class Ledger(Protocol):
    """The dead letters' book: the message store, on every transport."""

    def dead_letter(self, queue: str, envelope: Envelope, reason: str, now: float) -> None:
        """Keep a message that will not be delivered, with the reason."""

    def dead_letters(self) -> list[DeadLetter]:
        """Every dead letter, oldest first."""

    def take_dead_letter(self, seq: int) -> DeadLetter | None:
        """Remove dead letter ``seq``; None if there is none."""


class Transport(ABC):
    """Moves envelopes between named queues, at least once."""

    @abstractmethod
    async def declare(
        self,
        queue: str,
        capabilities: Sequence[str] = (),
        subscriptions: Sequence[Subscription] = (),
        *,
        temporary: bool = False,
    ) -> None:
        """Create a participant's queue, its capabilities' queues and its subscriptions.

        A ``temporary`` queue (a request's reply inbox) lives only until :meth:`forget`.
        """

    @abstractmethod
    async def forget(self, queue: str) -> None:
        """Remove a temporary queue and what is left in it."""

    @abstractmethod
    async def publish(self, envelope: Envelope, now: float) -> None:
        """Queue ``envelope`` for its recipient: an agent, a capability or a topic's subscribers.

        A message id already queued or handled there is not queued again.

        Raises:
            Unroutable: no queue takes it (an unknown agent or capability).
        """

    @abstractmethod
    async def receive(
        self,
        queues: Sequence[str],
        now: float,
        wait: float,
        lease_seconds: float,
        max_attempts: int,
    ) -> Delivery | None:
        """The next message of ``queues`` by the transport's order, waiting up to ``wait`` s.

        Expired messages, and ones delivered ``max_attempts`` times already (their
        consumers died), go to the dead letters on the way.
        """

    @abstractmethod
    async def seen(self, delivery: Delivery) -> bool:
        """Whether the delivered message's id was handled from its queue already.

        The bus acknowledges such a copy without handling it again; asked while the
        bus holds the sender's turn, so two copies handled at once cannot both pass.
        """

    @abstractmethod
    async def extend(self, delivery: Delivery, error: str, until: float) -> Delivery:
        """Handling failed and is tried again: keep the lease until ``until``, count it."""

    @abstractmethod
    async def ack(self, delivery: Delivery, now: float) -> None:
        """The message was handled: remove it, and remember its id as handled there."""

    @abstractmethod
    async def bury(self, delivery: Delivery, reason: str, now: float) -> None:
        """Move a delivered message to the dead letters with ``reason``."""

    ledger: Ledger
    """Where the dead letters (and, for a broker, the handled ids) are kept."""

    async def dead_letter(self, queue: str, envelope: Envelope, reason: str, now: float) -> None:
        """Keep a message that will not be delivered (it was never queued), with the reason."""
        await anyio.to_thread.run_sync(self.ledger.dead_letter, queue, envelope, reason, now)

    async def dead_letters(self) -> list[DeadLetter]:
        """Every dead letter, oldest first."""
        return await anyio.to_thread.run_sync(self.ledger.dead_letters)

    async def take_dead_letter(self, seq: int) -> DeadLetter | None:
        """Remove dead letter ``seq`` (to deliver it again); None if there is none."""
        return await anyio.to_thread.run_sync(self.ledger.take_dead_letter, seq)

    @abstractmethod
    async def depth(self, queue: str) -> int:
        """Messages waiting or in flight in ``queue``."""

    async def close(self) -> None:  # noqa: B027 - transports without connections keep none
        """Close connections the transport holds."""
