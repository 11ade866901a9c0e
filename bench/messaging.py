"""The message bus against bare aio-pika, on a private RabbitMQ node, and the embedded bus.

Three shapes, each a bare aio-pika baseline with the same delivery guarantees aiorch
keeps (persistent messages on durable queues, publisher confirms, manual
acknowledgements) against aiorch's bus on the same broker:

- RPC round trip: a request and its reply (the bare side: one callback queue and
  correlation ids, the classic RabbitMQ RPC);
- direct messages per second: ``BATCH`` one-way messages to one agent's queue, until the
  last is handled;
- a broadcast to ``SUBSCRIBERS`` subscribers: ``BATCH`` events on a topic, until every
  subscriber handled every one.

The embedded bus runs the same shapes for reference (no target). Then the priority
figure: with ``BACKLOG`` low-priority messages queued, where a high-priority one lands
in the handling order, on both transports.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from uuid import uuid4

import anyio

from aiorch.tasks.messaging.bus import MessageBus
from aiorch.tasks.messaging.embedded import EmbeddedTransport
from aiorch.tasks.messaging.envelope import Envelope, TextPart, parse_address
from aiorch.tasks.messaging.rabbitmq import RabbitTransport
from aiorch.tasks.messaging.store import MessageStore
from aiorch.tasks.messaging.transport import Transport
from bench.harness import Comparison, NotRun, Row, Section, Side, rotate

REQUESTS = 40
BATCH = 200
SUBSCRIBERS = 10
BACKLOG = 1000
TARGET = 2.0


def _envelope(sender: str, recipient: str, text: str = "ping", **fields: object) -> Envelope:
    kind = "event" if recipient.startswith("topic:") else fields.pop("kind", "event")
    return Envelope.model_validate(
        {
            "sender": parse_address(sender),
            "recipient": parse_address(recipient),
            "kind": kind,
            "parts": [TextPart(text=text)],
            **fields,
        }
    )


async def _until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(120):
        while not condition():
            await asyncio.sleep(0.001)


class _Bare:
    """The same shapes on aio-pika alone."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def rpc(self, latencies: list[float]) -> float:
        import aio_pika

        connection = await aio_pika.connect(self.url)
        try:
            channel = await connection.channel(publisher_confirms=True)
            # Durable, as aiorch's agent queues are: a persistent message there is written
            # to disk before the broker confirms it.
            server = await channel.declare_queue(
                f"bench-rpc-{uuid4().hex}", durable=True, auto_delete=True
            )

            async def answer(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                await channel.default_exchange.publish(
                    aio_pika.Message(
                        message.body,
                        correlation_id=message.correlation_id,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=message.reply_to or "",
                )
                await message.ack()

            await server.consume(answer)
            callback = await channel.declare_queue(exclusive=True)
            waiting: dict[str, asyncio.Future[bytes]] = {}

            async def replied(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                waiting.pop(message.correlation_id or "").set_result(message.body)
                await message.ack()

            await callback.consume(replied)
            started = time.perf_counter()
            for _ in range(REQUESTS):
                sent = time.perf_counter()
                correlation = uuid4().hex
                # The reply can come before the confirm of the request.
                reply = waiting[correlation] = asyncio.get_running_loop().create_future()
                await channel.default_exchange.publish(
                    aio_pika.Message(
                        _envelope("agent:me", "agent:x").model_dump_json().encode(),
                        correlation_id=correlation,
                        reply_to=callback.name,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=server.name,
                )
                await reply
                latencies.append(time.perf_counter() - sent)
            return (time.perf_counter() - started) / REQUESTS
        finally:
            await connection.close()

    async def direct(self) -> float:
        import aio_pika

        connection = await aio_pika.connect(self.url)
        try:
            channel = await connection.channel(publisher_confirms=True)
            queue = await channel.declare_queue(
                f"bench-direct-{uuid4().hex}", durable=True, auto_delete=True
            )
            handled = 0

            async def count(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                nonlocal handled
                handled += 1
                await message.ack()

            await queue.consume(count)
            body = _envelope("agent:me", "agent:x").model_dump_json().encode()
            started = time.perf_counter()
            for _ in range(BATCH):
                await channel.default_exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=queue.name,
                )
            await _until(lambda: handled == BATCH)
            return (time.perf_counter() - started) / BATCH
        finally:
            await connection.close()

    async def fan_out(self, subscribers: int) -> float:
        import aio_pika

        connection = await aio_pika.connect(self.url)
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.declare_exchange(
                f"bench-{uuid4().hex}", aio_pika.ExchangeType.TOPIC, auto_delete=True
            )
            counts = [0] * subscribers
            for index in range(subscribers):
                queue = await channel.declare_queue(
                    f"bench-sub-{uuid4().hex}", durable=True, auto_delete=True
                )
                await queue.bind(exchange, routing_key="bench.#")

                async def count(
                    message: aio_pika.abc.AbstractIncomingMessage, n: int = index
                ) -> None:
                    counts[n] += 1
                    await message.ack()

                await queue.consume(count)
            body = _envelope("agent:me", "topic:bench.x").model_dump_json().encode()
            started = time.perf_counter()
            for _ in range(BATCH):
                await exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key="bench.x",
                )
            await _until(lambda: min(counts) == BATCH)
            return (time.perf_counter() - started) / BATCH
        finally:
            await connection.close()


class _Aiorch:
    """The same shapes on aiorch's bus, over ``make()``'s transport."""

    def __init__(self, make: Callable[[], Transport]) -> None:
        self.make = make

    async def rpc(self, latencies: list[float]) -> float:
        bus = MessageBus(self.make())
        target = f"agent:echo-{uuid4().hex[:8]}"

        async def echo(message: Envelope) -> list[TextPart]:
            return [TextPart(text=message.text())]

        bus.register(target, echo)
        try:
            async with bus.serving():
                started = time.perf_counter()
                for _ in range(REQUESTS):
                    sent = time.perf_counter()
                    await bus.request(_envelope("agent:me", target, kind="request"), 30)
                    latencies.append(time.perf_counter() - sent)
                return (time.perf_counter() - started) / REQUESTS
        finally:
            await bus.close()

    async def direct(self) -> float:
        bus = MessageBus(self.make())
        target = f"agent:sink-{uuid4().hex[:8]}"
        handled = 0

        async def count(message: Envelope) -> None:
            nonlocal handled
            handled += 1

        bus.register(target, count)
        try:
            async with bus.serving():
                started = time.perf_counter()
                for _ in range(BATCH):
                    await bus.send(_envelope("agent:me", target))
                await _until(lambda: handled == BATCH)
                return (time.perf_counter() - started) / BATCH
        finally:
            await bus.close()

    async def fan_out(self, subscribers: int) -> float:
        bus = MessageBus(self.make(), max_concurrent=subscribers * 2)
        topic = f"bench{uuid4().hex[:8]}"
        counts = [0] * subscribers
        for index in range(subscribers):

            async def count(message: Envelope, n: int = index) -> None:
                counts[n] += 1

            bus.register(f"agent:sub-{topic}-{index}", count, topics=[f"{topic}.#"])
        try:
            async with bus.serving():
                started = time.perf_counter()
                for _ in range(BATCH):
                    await bus.send(_envelope("agent:me", f"topic:{topic}.x"))
                await _until(lambda: min(counts) == BATCH)
                return (time.perf_counter() - started) / BATCH
        finally:
            await bus.close()

    async def priority_position(self) -> int:
        bus = MessageBus(self.make(), max_concurrent=1)
        target = f"agent:busy-{uuid4().hex[:8]}"
        order: list[str] = []

        async def handle(message: Envelope) -> None:
            order.append(message.text())

        bus.register(target, handle)
        try:
            for index in range(BACKLOG):
                await bus.send(_envelope(f"agent:low-{index % 10}", target, "low", priority=1))
            await bus.send(_envelope("agent:boss", target, "urgent", priority=9))
            async with bus.serving():
                await _until(lambda: "urgent" in order)
            return order.index("urgent") + 1
        finally:
            await bus.close()


def _p(latencies: list[float], share: float) -> str:
    ordered = sorted(latencies)
    return f"{ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000:.1f} ms"


def run(repeat: int) -> list[Row]:
    """RPC, direct and broadcast on RabbitMQ (bare vs aiorch) and embedded; priority."""
    from aiorch.testing.rabbitmq import rabbitmq_installed, running_rabbitmq

    if not rabbitmq_installed():
        return [NotRun(benchmark="Message bus on RabbitMQ", reason="rabbitmq-server missing")]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as folder, running_rabbitmq() as node:
        ledger = Path(folder) / "ledger.sqlite"
        bare = _Bare(node.url)
        rabbit = _Aiorch(lambda: RabbitTransport(node.url, ledger=MessageStore(ledger)))
        embedded = _Aiorch(
            lambda: EmbeddedTransport(MessageStore(Path(folder) / "embedded.sqlite"))
        )
        latencies: dict[str, list[float]] = {"bare": [], "rabbit": [], "embedded": []}
        sides: dict[str, _Bare | _Aiorch] = {"bare": bare, "rabbit": rabbit, "embedded": embedded}
        shapes = [
            ("RPC round trip", "per request", 0),
            ("Direct messages", "per message, to one agent", 1),
            (f"Broadcast to {SUBSCRIBERS} subscribers", "per event, all subscribers", SUBSCRIBERS),
        ]
        for title, per, subscribers in shapes:

            def sampler(key: str, subscribers: int = subscribers) -> Callable[[], float]:
                side = sides[key]
                if subscribers == 0:
                    return lambda: anyio.run(side.rpc, latencies[key])
                if subscribers == 1:
                    return lambda: anyio.run(side.direct)
                return lambda: anyio.run(side.fan_out, subscribers)

            bare_s, rabbit_s, embedded_s = rotate(
                [sampler("bare"), sampler("rabbit"), sampler("embedded")], repeat
            )
            row = Comparison(
                benchmark=f"{title}, RabbitMQ",
                baseline=Side(label="bare aio-pika", samples=bare_s),
                candidate=Side(label="aiorch bus", samples=rabbit_s),
                target=f"<= {TARGET:g}x",
                note=per,
            )
            rows.append(row.model_copy(update={"met": row.ratio <= TARGET}))
            rows.append(
                Comparison(
                    benchmark=f"{title}, embedded bus (reference)",
                    baseline=Side(label="bare aio-pika on RabbitMQ", samples=bare_s),
                    candidate=Side(label="aiorch bus, SQLite", samples=embedded_s),
                    note=per,
                )
            )
        positions = {
            "embedded": anyio.run(embedded.priority_position),
            "RabbitMQ": anyio.run(rabbit.priority_position),
        }
        latency_lines = "\n".join(
            f"| {name} | {_p(values, 0.5)} | {_p(values, 0.99)} |"
            for name, values in (
                ("bare aio-pika", latencies["bare"]),
                ("aiorch on RabbitMQ", latencies["rabbit"]),
                ("aiorch embedded", latencies["embedded"]),
            )
        )
        rows.append(
            Section(
                title="Message bus: RPC latency and priority under a backlog",
                markdown=(
                    "| RPC | p50 | p99 |\n|---|---|---|\n"
                    f"{latency_lines}\n\n"
                    f"With {BACKLOG} low-priority messages queued, a priority-9 message was "
                    f"handled as number {positions['embedded']} on the embedded bus and "
                    f"number {positions['RabbitMQ']} on RabbitMQ (target: within the next "
                    "few deliveries; RabbitMQ's consumer prefetch is 4)."
                ),
            )
        )
    return rows
