"""The embedded bus: each promise of the protocol, on a real SQLite store."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiorch.cli import main
from aiorch.core.errors import ConfigurationError
from aiorch.tasks.container.errors import StepFailed
from aiorch.tasks.messaging.bus import MessageBus
from aiorch.tasks.messaging.envelope import DataPart, Envelope, TextPart, parse_address
from aiorch.tasks.messaging.errors import HandlerError, MessageRejected, NoReply
from aiorch.tasks.messaging.store import MessageStore, topic_matches
from tests.messages import text_message, wait_for_line

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    """Seconds since the epoch, moved by hand."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(scratch_dir: Path) -> MessageStore:
    return MessageStore(scratch_dir / "messages.sqlite", aging_seconds=5)


def _text(message: Envelope) -> str:
    part = message.parts[0]
    assert isinstance(part, TextPart)
    return part.text


def test_a_request_gets_its_reply(store: MessageStore) -> None:
    bus = MessageBus(store)

    async def shout(message: Envelope) -> list[TextPart]:
        return [TextPart(text=_text(message).upper())]

    bus.register("agent:shouter", shout)

    async def main() -> Envelope:
        async with bus.serving():
            return await bus.request(text_message("agent:me", "agent:shouter", kind="request"), 10)

    reply = anyio.run(main)
    assert (reply.kind, _text(reply), str(reply.sender)) == ("reply", "HI", "agent:shouter")


def test_a_handlers_typed_error_reaches_the_caller_as_that_error(store: MessageStore) -> None:
    bus = MessageBus(store)

    async def fails(message: Envelope) -> None:
        text = _text(message)
        if text == "config":
            raise ConfigurationError("region: 'mars' is not a region; use eu or us")
        if text == "step":
            raise StepFailed("build", 2, "", "error: missing semicolon")
        raise ValueError("an untyped failure")

    bus.register("agent:fails", fails)

    async def ask(text: str) -> None:
        await bus.request(text_message("agent:me", "agent:fails", text, kind="request"), 10)

    async def main() -> list[BaseException]:
        caught: list[BaseException] = []
        async with bus.serving():
            for text in ("config", "step", "other"):
                try:
                    await ask(text)
                except Exception as error:
                    caught.append(error)
        return caught

    config, step, other = anyio.run(main)
    assert isinstance(config, ConfigurationError)
    assert str(config) == "region: 'mars' is not a region; use eu or us"
    assert isinstance(step, StepFailed)
    assert step.context()["exit_code"] == 2
    assert step.retryable is False
    assert isinstance(other, HandlerError)
    assert other.problem["type"] == "urn:aiorch:problem:unexpected-error"


def test_no_reply_in_time_is_a_retryable_error(store: MessageStore) -> None:
    bus = MessageBus(store)

    async def never(message: Envelope) -> None:
        await anyio.sleep_forever()

    bus.register("agent:slow", never)
    with pytest.raises(NoReply, match=r"within 0\.3 s") as caught:
        anyio.run(bus.request, text_message("agent:me", "agent:slow", kind="request"), 0.3)
    assert caught.value.retryable


def test_broadcast_reaches_every_matching_subscriber_and_the_publisher_if_it_asks(
    store: MessageStore,
) -> None:
    bus = MessageBus(store)
    heard: dict[str, list[str]] = {}

    def listener(name: str) -> Any:
        async def handle(message: Envelope) -> None:
            heard.setdefault(name, []).append(_text(message))

        return handle

    bus.register("agent:one", listener("one"), topics=["incidents.*"])
    bus.register("agent:all", listener("all"), topics=["incidents.#"])
    bus.register("agent:other", listener("other"), topics=["billing.*"])
    bus.register("agent:loud", listener("loud"), topics=["incidents.#"])
    bus.register("agent:echo", listener("echo"), topics=["incidents.#"], hear_own=True)

    async def main() -> None:
        await bus.send(text_message("agent:loud", "topic:incidents.new", "a"))
        await bus.send(text_message("agent:echo", "topic:incidents.db.down", "b"))
        while await bus.serve_once():
            pass

    anyio.run(main)
    assert heard == {"one": ["a"], "all": ["a", "b"], "echo": ["a", "b"], "loud": ["b"]}
    assert topic_matches("a.#", "a")
    assert not topic_matches("a.*", "a.b.c")


def test_a_high_priority_message_overtakes_a_backlog_without_starving_it(
    store: MessageStore,
) -> None:
    clock = Clock()
    for number in range(1000):
        store.enqueue(
            "agent:worker",
            text_message("agent:a", "agent:worker", f"low {number}", priority=0),
            clock.now,
        )
    store.enqueue(
        "agent:worker", text_message("agent:b", "agent:worker", "urgent", priority=9), clock.now
    )
    order = []
    for _ in range(3):
        leased = store.lease(["agent:worker"], clock.now, 60, 5)
        assert leased is not None
        order.append(_text(leased.envelope))
        store.ack(leased, clock.now)
    assert "urgent" in order  # within the next few deliveries, out of 1,001
    # Aging: a low message that waited 9 x aging_seconds ties a fresh top-priority one.
    clock.now += 45
    store.enqueue(
        "agent:worker", text_message("agent:c", "agent:worker", "fresh", priority=9), clock.now
    )
    leased = store.lease(["agent:worker"], clock.now, 60, 5)
    assert leased is not None
    assert _text(leased.envelope).startswith("low")


def test_order_is_kept_per_sender_even_with_competing_consumers(store: MessageStore) -> None:
    bus = MessageBus(store)
    handled: list[tuple[str, int]] = []

    def consumer(name: str) -> Any:
        async def handle(message: Envelope) -> None:
            part = message.parts[0]
            assert isinstance(part, DataPart)
            handled.append((name, int(str(part.data))))

        return handle

    bus.register("agent:left", consumer("left"), capabilities=["count"])
    bus.register("agent:right", consumer("right"), capabilities=["count"])

    async def main() -> None:
        for number in range(20):
            await bus.send(
                Envelope(
                    sender=parse_address("agent:counter"),
                    recipient=parse_address("capability:count"),
                    kind="event",
                    parts=[DataPart(data=number)],
                )
            )
        while await bus.serve_once():
            pass

    anyio.run(main)
    assert [number for _, number in handled] == list(range(20))
    assert {name for name, _ in handled} == {"left", "right"}  # the load was shared


def test_a_message_id_is_handled_once_however_often_it_is_sent(store: MessageStore) -> None:
    bus = MessageBus(store)
    seen: list[str] = []

    async def handle(message: Envelope) -> None:
        seen.append(message.id)

    bus.register("agent:once", handle)
    message = text_message("agent:me", "agent:once")

    async def main() -> None:
        await bus.send(message)
        await bus.send(message)  # at least once: a sender's retry
        while await bus.serve_once():
            pass
        await bus.send(message)  # after it was handled
        while await bus.serve_once():
            pass

    anyio.run(main)
    assert seen == [message.id]


def test_unacknowledged_and_failing_messages_are_redelivered_then_dead_lettered(
    store: MessageStore,
) -> None:
    clock = Clock()
    bus = MessageBus(store, clock=clock, max_attempts=3, retry_seconds=1, lease_seconds=30)
    attempts: list[int] = []

    async def flaky(message: Envelope) -> None:
        attempts.append(1)
        raise TimeoutError("the upstream did not answer")  # untyped: retryable

    bus.register("agent:flaky", flaky)
    lost = text_message("agent:me", "agent:flaky", "lost")
    store.enqueue("agent:flaky", lost, clock.now)
    leased = store.lease(["agent:flaky"], clock.now, 30, 3)  # a consumer that then died
    assert leased is not None
    assert store.lease(["agent:flaky"], clock.now, 30, 3) is None  # in flight: held
    clock.now += 31  # its lease ends: delivered again

    async def main() -> None:
        for _ in range(4):
            await bus.serve_once()
            clock.now += 2

    anyio.run(main)
    assert len(attempts) == 2  # attempts 2 and 3 (the dead consumer had the first)
    letters = store.dead_letters()
    assert [letter.id for letter in letters] == [lost.id]
    assert "delivery failed 3 times; last error: the upstream did not answer" in letters[0].reason


def test_undeliverable_messages_name_the_field_go_to_dead_letters_and_can_be_redelivered(
    store: MessageStore,
) -> None:
    bus = MessageBus(store, max_bytes=2000)
    now = datetime.now(UTC)
    cases = [
        (
            text_message("agent:me", "agent:nobody"),
            "recipient: no agent agent:nobody is registered",
        ),
        (
            text_message("agent:me", "capability:translate"),
            "no agent offers capability 'translate'",
        ),
        (
            text_message(
                "agent:me",
                "agent:nobody",
                created_at=now - timedelta(minutes=2),
                expires_at=now - timedelta(minutes=1),
            ),
            "expires_at: the message expired before it was sent",
        ),
        (text_message("agent:me", "agent:nobody", "x" * 3000), "over the bus's limit of 2000"),
    ]
    for message, reason in cases:
        with pytest.raises(MessageRejected, match=reason):
            anyio.run(bus.send, message)
    letters = store.dead_letters()
    assert [letter.id for letter in letters] == [message.id for message, _ in cases]
    assert all(letter.reason for letter in letters)

    got: list[str] = []

    async def handle(message: Envelope) -> None:
        got.append(message.id)

    bus.register("agent:nobody", handle)

    async def redeliver_first() -> None:
        await bus.redeliver(letters[0].seq)
        while await bus.serve_once():
            pass

    anyio.run(redeliver_first)
    assert got == [cases[0][0].id]
    with pytest.raises(ConfigurationError, match="dead letter 999 does not exist"):
        anyio.run(bus.redeliver, 999)


def _worker(store: MessageStore, name: str, ledger: Path, mode: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.bus_worker", str(store.path), name, str(ledger), mode],
        cwd=ROOT,
    )


def test_a_message_whose_consumer_was_killed_is_handled_by_another_process(
    store: MessageStore, scratch_dir: Path
) -> None:
    ledger = scratch_dir / "ledger"
    store.register("agent:seed", ["work"])  # the capability exists before any worker
    anyio.run(MessageBus(store).send, text_message("agent:me", "capability:work", "job-1"))
    first = _worker(store, "first", ledger, "hang")
    second: subprocess.Popen[bytes] | None = None
    try:
        wait_for_line(ledger, "start first job-1")
        first.send_signal(signal.SIGKILL)  # mid-message: never acknowledged
        first.wait(timeout=30)
        second = _worker(store, "second", ledger, "finish")
        wait_for_line(ledger, "done second job-1")
        deadline = time.monotonic() + 30
        while store.depth("capability:work"):  # acknowledged just after the handler ends
            assert time.monotonic() < deadline, "the message was never acknowledged"
            time.sleep(0.05)
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


def test_dead_letters_are_listed_and_redelivered_from_the_command_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = MessageStore.default()  # the session's data directory
    message = text_message("agent:me", "agent:cli-target")
    with pytest.raises(MessageRejected):
        anyio.run(MessageBus(store).send, message)
    assert main(["messages", "dead-letters"]) == 0
    listed = capsys.readouterr().out
    line = next(line for line in listed.splitlines() if message.id in line)
    assert "recipient: no agent agent:cli-target is registered" in line
    seq = line.split()[0]
    store.register("agent:cli-target", [])
    assert main(["messages", "redeliver", seq]) == 0
    assert "sent again to agent:cli-target" in capsys.readouterr().out
    assert store.depth("agent:cli-target") == 1
    assert main(["messages", "redeliver", seq]) == 2
    assert f"dead letter {seq} does not exist" in capsys.readouterr().err


def test_messages_from_different_senders_are_handled_at_once(store: MessageStore) -> None:
    bus = MessageBus(store, max_concurrent=2)
    in_flight: list[str] = []
    both = anyio.Event()

    async def waits_for_company(message: Envelope) -> None:
        in_flight.append(str(message.sender))
        if len(in_flight) == 2:
            both.set()
        with anyio.fail_after(10):  # sequential handling would never get here
            await both.wait()

    bus.register("agent:worker", waits_for_company)

    async def main() -> None:
        await bus.send(text_message("agent:a", "agent:worker"))
        await bus.send(text_message("agent:b", "agent:worker"))
        async with bus.serving():
            with anyio.fail_after(10):
                await both.wait()

    anyio.run(main)
    assert sorted(in_flight) == ["agent:a", "agent:b"]
