"""Faults on a real RabbitMQ: a restarted broker, a killed consumer, a cut connection.

Each fault ends the same way: every message handled, none handled twice, none lost.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from uuid import uuid4

import anyio
import pytest

from aiorch.tasks.messaging.bus import MessageBus
from aiorch.tasks.messaging.envelope import Envelope, TextPart, parse_address
from aiorch.tasks.messaging.rabbitmq import RabbitTransport
from aiorch.tasks.messaging.store import MessageStore
from aiorch.testing.rabbitmq import RabbitNode
from tests.messages import wait_for_line
from tests.tcp_relay import TcpRelay

ROOT = Path(__file__).resolve().parents[1]
# What aio-pika says while the broker is away: warnings and errors of its reconnection.
RECONNECTING = (
    "Unexpected connection close",
    "error when creating transport",
    r"aio_pika\.tools: Callback",
    "Connection attempt",
)


def _message(recipient: str, text: str) -> Envelope:
    return Envelope(
        sender=parse_address("agent:producer"),
        recipient=parse_address(recipient),
        kind="event",
        parts=[TextPart(text=text)],
    )


async def _until(condition: Callable[[], bool], seconds: float = 90) -> None:
    with anyio.fail_after(seconds):
        while not condition():
            await anyio.sleep(0.02)


@pytest.mark.logs_errors(*RECONNECTING)
def test_a_broker_restart_loses_nothing_and_handles_nothing_twice(
    rabbitmq_node: RabbitNode, scratch_dir: Path
) -> None:
    target = f"agent:restart-{uuid4().hex[:8]}"
    ledger = MessageStore(scratch_dir / "ledger.sqlite")
    bus = MessageBus(RabbitTransport(rabbitmq_node.url, ledger=ledger), max_concurrent=2)
    handled: list[str] = []
    restarted = anyio.Event()

    async def handle(message: Envelope) -> None:
        if len(handled) == 5 and not restarted.is_set():
            await restarted.wait()  # in flight while the broker restarts
        handled.append(message.text())

    bus.register(target, handle)
    texts = [f"m{index}" for index in range(20)]

    async def main() -> None:
        for text in texts:
            await bus.send(_message(target, text))
        async with bus.serving():
            await _until(lambda: len(handled) >= 5)
            await anyio.to_thread.run_sync(rabbitmq_node.restart)
            restarted.set()
            await _until(lambda: set(handled) == set(texts))
            # Anything redelivered after the restart has had time to arrive by now.
            marker = _message(target, "marker")
            await _send_when_back(bus, marker)
            await _until(lambda: "marker" in handled)
        await bus.close()

    anyio.run(main)
    assert sorted(handled, key=lambda text: (len(text), text)) == [*texts, "marker"]
    assert len(handled) == len(set(handled)), "a message was handled twice"


async def _send_when_back(bus: MessageBus, message: Envelope) -> None:
    with anyio.fail_after(60):
        while True:
            try:
                await bus.send(message)
                return
            except Exception:  # the robust connection is still reconnecting
                await anyio.sleep(0.2)


def test_a_message_whose_consumer_was_killed_is_handled_by_another(
    rabbitmq_node: RabbitNode, scratch_dir: Path
) -> None:
    ledger, store = scratch_dir / "ledger", scratch_dir / "ledger.sqlite"
    capability = f"work-{uuid4().hex[:8]}"
    bus = MessageBus(RabbitTransport(rabbitmq_node.url, ledger=MessageStore(store)))
    bus.register("agent:seed", _never, capabilities=[capability])

    async def seed() -> None:
        await bus.send(_message("agent:seed", "declare"))  # declares the capability's queue
        await bus.send(_message(f"capability:{capability}", "job-1"))
        await bus.close()

    anyio.run(seed)

    def worker(name: str, mode: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.bus_worker",
                str(store),
                name,
                str(ledger),
                mode,
                rabbitmq_node.url,
            ],
            cwd=ROOT,
            env=_with_capability(capability),
        )

    first = worker("first", "hang")
    second: subprocess.Popen[bytes] | None = None
    try:
        wait_for_line(ledger, "start first job-1")
        first.send_signal(signal.SIGKILL)  # mid-message: never acknowledged
        first.wait(timeout=30)
        second = worker("second", "finish")
        wait_for_line(ledger, "done second job-1")
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=30)
    assert ledger.read_text().splitlines() == [
        "start first job-1",
        "start second job-1",
        "done second job-1",
    ]


@pytest.mark.logs_errors(*RECONNECTING)
def test_a_cut_connection_reconnects_and_delivery_goes_on(
    rabbitmq_node: RabbitNode, scratch_dir: Path
) -> None:
    target = f"agent:cut-{uuid4().hex[:8]}"
    handled: list[str] = []

    async def handle(message: Envelope) -> None:
        handled.append(message.text())

    with TcpRelay(rabbitmq_node.amqp_port) as relay:
        url = f"amqp://guest:guest@127.0.0.1:{relay.port}/"
        bus = MessageBus(RabbitTransport(url, ledger=MessageStore(scratch_dir / "l.sqlite")))
        bus.register(target, handle)

        async def main() -> None:
            async with bus.serving():
                await bus.send(_message(target, "before"))
                await _until(lambda: handled == ["before"])
                relay.drop()
                await _send_when_back(bus, _message(target, "after"))
                await _until(lambda: "after" in handled)
            await bus.close()

        anyio.run(main)
    assert handled == ["before", "after"]


async def _never(message: Envelope) -> None:
    raise AssertionError("the seed agent only declares the capability")


def _with_capability(capability: str) -> dict[str, str]:
    import os

    return {**os.environ, "AIORCH_TEST_CAPABILITY": capability}


def test_a_slow_handler_does_not_hold_back_the_acknowledgements_of_others(
    rabbitmq_node: RabbitNode, scratch_dir: Path
) -> None:
    # Acknowledgements are coalesced per channel (one frame for a run of settled tags).
    # A message still being handled must not stop the others being acknowledged: the
    # broker gives each consumer at most `prefetch` unacknowledged messages, so held
    # acknowledgements would stall the fast agent after four.
    slow, fast = f"agent:slow-{uuid4().hex[:8]}", f"agent:fast-{uuid4().hex[:8]}"
    ledger = MessageStore(scratch_dir / "ledger.sqlite")
    bus = MessageBus(RabbitTransport(rabbitmq_node.url, ledger=ledger, prefetch=4))
    release = anyio.Event()
    handled: list[str] = []

    async def hold(message: Envelope) -> None:
        await release.wait()
        handled.append(message.text())

    async def take(message: Envelope) -> None:
        handled.append(message.text())

    bus.register(slow, hold)
    bus.register(fast, take)
    texts = [f"f{index}" for index in range(30)]

    async def main() -> None:
        async with bus.serving():
            await bus.send(_message(slow, "held"))
            for text in texts:
                await bus.send(_message(fast, text))
            await _until(lambda: set(texts) <= set(handled), seconds=30)
            release.set()
            await _until(lambda: "held" in handled, seconds=30)
        await bus.close()

    anyio.run(main)
    assert sorted(handled) == sorted([*texts, "held"])

    async def left_on_the_broker() -> dict[str, int]:
        # A fresh connection: whatever the first one did not acknowledge is ready again.
        transport = RabbitTransport(rabbitmq_node.url, ledger=ledger)
        try:
            return {queue: await transport.depth(queue) for queue in (slow, fast)}
        finally:
            await transport.close()

    assert anyio.run(left_on_the_broker) == {slow: 0, fast: 0}
