"""Acknowledgements to RabbitMQ, coalesced: one ``basic.ack`` for each run of settled deliveries.

The broker reads ``multiple=True`` as "every delivery on this channel up to this tag".
So a batch of settled deliveries whose tags run on from the oldest one still outstanding
costs one frame, not one each (with ten subscribers, those frames were a third of the
bus's overhead over bare aio-pika, and broker CPU besides). A delivery settled behind one
that is still being handled (a slow handler) is acknowledged on its own once its batch
is the last, so it never waits for that handler: its consumer's prefetch window would
fill and stall otherwise.

Example:
    ```python
    from aiorch.tasks.messaging.rabbitmq_acks import Acknowledgements

    acks = Acknowledgements()
    # acks.delivered(message) as each message arrives, then, once handled:
    # await acks.settle([message], last=True)
    ```
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import weakref
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aio_pika.abc import AbstractIncomingMessage

logger = logging.getLogger(__name__)


@dataclass
class _Window:
    """One channel's deliveries not yet acknowledged to the broker."""

    outstanding: list[int] = field(default_factory=list)  # a heap of delivery tags
    settled: dict[int, AbstractIncomingMessage] = field(default_factory=dict)
    # Acknowledged on their own (or abandoned) while still in the heap.
    passed: set[int] = field(default_factory=set)

    def advance(self) -> AbstractIncomingMessage | None:
        """Drop the settled run at the head; its newest message (to ack with multiple)."""
        newest = None
        while self.outstanding and (
            self.outstanding[0] in self.settled or self.outstanding[0] in self.passed
        ):
            tag = heapq.heappop(self.outstanding)
            if tag in self.passed:
                self.passed.discard(tag)
            else:
                newest = self.settled.pop(tag)
        return newest


class Acknowledgements:
    """The acknowledgement windows of one connection's channels."""

    def __init__(self) -> None:
        # Keyed by aiormq's channel: a reconnect brings a new channel whose tags start
        # again at 1, and the old one's window goes with it.
        self._windows: weakref.WeakKeyDictionary[object, _Window] = weakref.WeakKeyDictionary()
        # Frames must reach the broker in the order they were decided: an ack with
        # multiple for tag 7 sent before one for tag 5 would make 5 unknown to the broker,
        # and it closes the channel for that.
        self._sending = asyncio.Lock()

    def delivered(self, message: AbstractIncomingMessage) -> None:
        """Count ``message`` as outstanding on its channel (call as it arrives)."""
        if message.delivery_tag is None:
            return
        window = self._windows.setdefault(message.channel, _Window())
        heapq.heappush(window.outstanding, message.delivery_tag)

    def abandon(self, message: AbstractIncomingMessage) -> None:
        """``message`` will never be settled (its queue was deleted): stop waiting for it."""
        window = self._window(message)
        if window is not None and message.delivery_tag is not None:
            window.passed.add(message.delivery_tag)

    async def settle(self, messages: Iterable[AbstractIncomingMessage], *, last: bool) -> None:
        """Acknowledge ``messages``; ``last``: no further batch is coming soon.

        A run of settled tags from a channel's oldest outstanding one is acknowledged
        in one frame. Settled messages behind an unsettled one wait for the next batch,
        or, when this is the last, are acknowledged one by one.
        """
        async with self._sending:
            touched: list[_Window] = []
            for message in messages:
                window = self._window(message)
                if window is None or message.delivery_tag is None:
                    continue
                window.settled[message.delivery_tag] = message
                if window not in touched:
                    touched.append(window)
            for window in touched:
                newest = window.advance()
                if newest is not None:
                    await _send(newest.ack(multiple=True))
                if last:
                    for tag, message in window.settled.items():
                        await _send(message.ack())
                        window.passed.add(tag)
                    window.settled.clear()

    def _window(self, message: AbstractIncomingMessage) -> _Window | None:
        from aio_pika.exceptions import ChannelInvalidStateError

        try:
            channel = message.channel
        except ChannelInvalidStateError:
            _lost(ChannelInvalidStateError())
            return None
        return self._windows.get(channel)


async def _send(acknowledgement: Awaitable[None]) -> None:
    # After a reconnect the old channel is gone and so is the delivery: the broker hands
    # the message out again, and the ledger acknowledges it there without handling it.
    from aio_pika.exceptions import AMQPError, ChannelInvalidStateError

    try:
        await acknowledgement
    except (AMQPError, ChannelInvalidStateError, ConnectionError) as error:
        _lost(error)


def _lost(error: BaseException) -> None:
    logger.warning("an acknowledgement was lost with the connection (%s)", type(error).__name__)
