"""One contract, every transport: the same tests on the embedded bus and on a real RabbitMQ.

Each test names its participants with a fresh suffix, since one broker node serves the
whole session and its queues are durable.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import anyio
import pytest

from aiorch.core.errors import ConfigurationError
from aiorch.tasks.container.errors import StepFailed
from aiorch.tasks.messaging.bus import MessageBus
from aiorch.tasks.messaging.embedded import EmbeddedTransport
from aiorch.tasks.messaging.envelope import DataPart, Envelope, TextPart, parse_address
from aiorch.tasks.messaging.errors import MessageRejected, NoReply
from aiorch.tasks.messaging.rabbitmq import RabbitTransport
from aiorch.tasks.messaging.routes import MessageRoutes, RouteRule
from aiorch.tasks.messaging.store import MessageStore
from aiorch.tasks.messaging.transport import Transport
from aiorch.testing.rabbitmq import RabbitNode
from tests.messages import text_message

TRANSPORTS = ["embedded", "rabbitmq"]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest, scratch_dir: Path) -> Iterator[Transport]:
    ledger = MessageStore(scratch_dir / "messages.sqlite")
    if request.param == "embedded":
        yield EmbeddedTransport(ledger)
        return
    node: RabbitNode = request.getfixturevalue("rabbitmq_node")
    yield RabbitTransport(node.url, ledger=ledger)


@pytest.fixture
def name() -> Callable[[str], str]:
    """Addresses unique to this test: ``name("agent:worker")`` -> ``agent:worker-1a2b3c``."""
    suffix = uuid4().hex[:8]
    return lambda address: f"{address}-{suffix}"


def _text(message: Envelope) -> str:
    part = message.parts[0]
    assert isinstance(part, TextPart)
    return part.text


def _run(bus: MessageBus, main: Callable[[], Awaitable[Any]]) -> Any:
    async def closing() -> Any:
        try:
            return await main()
        finally:
            await bus.close()

    return anyio.run(closing)


async def _until(condition: Callable[[], bool], seconds: float = 20) -> None:
    with anyio.fail_after(seconds):
        while not condition():
            await anyio.sleep(0.01)


async def _watching_dead_letters(
    transport: Transport, letters: list[Any], main: Callable[[], Awaitable[Any]]
) -> Any:
    """Run ``main`` while ``letters`` mirrors the transport's dead letters; its result."""

    async def poll() -> None:
        while True:
            letters[:] = await transport.dead_letters()
            await anyio.sleep(0.05)

    async with anyio.create_task_group() as group:
        group.start_soon(poll)
        result = await main()
        group.cancel_scope.cancel()
    return result


def test_request_reply_and_typed_errors(transport: Transport, name: Callable[[str], str]) -> None:
    bus = MessageBus(transport)
    shouter, fails = name("agent:shouter"), name("agent:fails")

    async def shout(message: Envelope) -> list[TextPart]:
        return [TextPart(text=_text(message).upper())]

    async def refuse(message: Envelope) -> None:
        if _text(message) == "config":
            raise ConfigurationError("region: 'mars' is not a region; use eu or us")
        raise StepFailed("build", 2, "", "error: missing semicolon")

    bus.register(shouter, shout)
    bus.register(fails, refuse)

    async def main() -> tuple[Envelope, list[BaseException]]:
        caught: list[BaseException] = []
        async with bus.serving():
            reply = await bus.request(text_message("agent:me", shouter, kind="request"), 20)
            for text in ("config", "step"):
                try:
                    await bus.request(text_message("agent:me", fails, text, kind="request"), 20)
                except Exception as error:
                    caught.append(error)
        return reply, caught

    reply, (config, step) = _run(bus, main)
    assert (reply.kind, _text(reply), str(reply.sender)) == ("reply", "HI", shouter)
    assert isinstance(config, ConfigurationError)
    assert str(config) == "region: 'mars' is not a region; use eu or us"
    assert isinstance(step, StepFailed)
    assert step.context()["exit_code"] == 2


def test_no_reply_in_time(transport: Transport, name: Callable[[str], str]) -> None:
    bus = MessageBus(transport)
    slow = name("agent:slow")

    async def never(message: Envelope) -> None:
        await anyio.sleep_forever()

    bus.register(slow, never)

    async def main() -> None:
        async with bus.serving():
            await bus.request(text_message("agent:me", slow, kind="request"), 0.5)

    with pytest.raises(NoReply, match=r"within 0\.5 s"):
        _run(bus, main)


def test_broadcast_by_pattern_and_hearing_ones_own(
    transport: Transport, name: Callable[[str], str]
) -> None:
    bus = MessageBus(transport)
    got: dict[str, list[str]] = {"all": [], "eu": [], "self": [], "deaf": []}
    area = name("orders").replace(":", "")

    def collect(key: str) -> Callable[[Envelope], Awaitable[None]]:
        async def handle(message: Envelope) -> None:
            got[key].append(_text(message))

        return handle

    bus.register(name("agent:all"), collect("all"), topics=[f"{area}.#"])
    bus.register(name("agent:eu"), collect("eu"), topics=[f"{area}.eu.*"])
    publisher, deaf = name("agent:self"), name("agent:deaf")
    bus.register(publisher, collect("self"), topics=[f"{area}.#"], hear_own=True)
    bus.register(deaf, collect("deaf"), topics=[f"{area}.#"])

    async def main() -> None:
        async with bus.serving():
            await bus.send(text_message(publisher, f"topic:{area}.eu.paris", "paris"))
            await bus.send(text_message(deaf, f"topic:{area}.us.nyc", "nyc"))
            await _until(lambda: len(got["all"]) == 2 and len(got["self"]) == 2)
            await _until(lambda: len(got["eu"]) == 1 and len(got["deaf"]) == 1)

    _run(bus, main)
    assert sorted(got["all"]) == ["nyc", "paris"]
    assert got["eu"] == ["paris"]
    assert sorted(got["self"]) == ["nyc", "paris"]  # it asked to hear its own
    assert got["deaf"] == ["paris"]  # not its own "nyc"


def test_capability_messages_are_shared_by_competing_consumers(
    transport: Transport, name: Callable[[str], str]
) -> None:
    bus = MessageBus(transport, max_concurrent=4)
    capability = name("translate").replace(":", "")
    handled: dict[str, list[str]] = {"a": [], "b": []}

    def worker(key: str) -> Callable[[Envelope], Awaitable[None]]:
        async def handle(message: Envelope) -> None:
            handled[key].append(_text(message))
            await anyio.sleep(0.05)  # a busy consumer leaves the next message to the other

        return handle

    bus.register(name("agent:a"), worker("a"), capabilities=[capability])
    bus.register(name("agent:b"), worker("b"), capabilities=[capability])

    async def main() -> None:
        async with bus.serving():
            for index in range(20):
                await bus.send(
                    text_message(f"agent:sender-{index}", f"capability:{capability}", str(index))
                )
            await _until(lambda: len(handled["a"]) + len(handled["b"]) == 20)

    _run(bus, main)
    assert sorted(handled["a"] + handled["b"], key=int) == [str(index) for index in range(20)]
    assert handled["a"], handled  # both took a share
    assert handled["b"], handled


def test_a_message_id_is_handled_once_however_often_it_is_sent(
    transport: Transport, name: Callable[[str], str]
) -> None:
    bus = MessageBus(transport)
    target = name("agent:once")
    seen: list[str] = []

    async def handle(message: Envelope) -> None:
        seen.append(message.id)
        await anyio.sleep(0.05)

    bus.register(target, handle)
    message = text_message("agent:me", target)
    after = text_message("agent:me", target, "after")

    async def main() -> None:
        for _ in range(3):
            await bus.send(message)
        await bus.send(after)
        async with bus.serving():
            await _until(lambda: after.id in seen)
            await bus.send(message)
            await bus.send(after)
            marker = text_message("agent:me", target, "marker")
            await bus.send(marker)
            await _until(lambda: marker.id in seen)

    _run(bus, main)
    assert seen.count(message.id) == 1
    assert seen.count(after.id) == 1


def test_order_is_kept_per_sender_while_handling_several_at_once(
    transport: Transport, name: Callable[[str], str]
) -> None:
    bus = MessageBus(transport, max_concurrent=4)
    target = name("agent:ordered")
    finished: dict[str, list[int]] = {"agent:a": [], "agent:b": []}
    rng = random.Random(7)

    async def handle(message: Envelope) -> None:
        await anyio.sleep(rng.uniform(0, 0.02))
        finished[str(message.sender)].append(int(_text(message)))

    bus.register(target, handle)

    async def main() -> None:
        for index in range(15):
            await bus.send(text_message("agent:a", target, str(index)))
            await bus.send(text_message("agent:b", target, str(index)))
        async with bus.serving():
            await _until(lambda: sum(map(len, finished.values())) == 30)

    _run(bus, main)
    assert finished["agent:a"] == list(range(15))
    assert finished["agent:b"] == list(range(15))


def test_a_high_priority_message_overtakes_a_backlog_of_a_thousand(
    transport: Transport, name: Callable[[str], str]
) -> None:
    bus = MessageBus(transport, max_concurrent=1)
    target = name("agent:busy")
    order: list[str] = []

    async def handle(message: Envelope) -> None:
        order.append(_text(message))

    bus.register(target, handle)

    async def main() -> None:
        for index in range(1000):
            await bus.send(
                text_message(f"agent:low-{index % 10}", target, f"low-{index}", priority=1)
            )
        await bus.send(text_message("agent:boss", target, "urgent", priority=9))
        async with bus.serving():
            await _until(lambda: "urgent" in order, 60)

    _run(bus, main)
    assert order.index("urgent") < 10, order[:12]


def test_undeliverable_and_failing_messages_go_to_the_dead_letters_and_come_back(
    transport: Transport, name: Callable[[str], str]
) -> None:
    bus = MessageBus(transport, max_attempts=3, retry_seconds=0.05)
    nobody, flaky = name("agent:nobody"), name("agent:flaky")
    attempts: list[str] = []
    got: list[str] = []

    async def fails(message: Envelope) -> None:
        attempts.append(message.id)
        raise TimeoutError("the upstream did not answer")  # untyped: retryable

    async def handle(message: Envelope) -> None:
        got.append(message.id)

    bus.register(flaky, fails)
    lost = text_message("agent:me", nobody)
    failing = text_message("agent:me", flaky)

    async def main() -> None:
        with pytest.raises(MessageRejected, match=f"recipient: .*{nobody}"):
            await bus.send(lost)
        with pytest.raises(MessageRejected, match=r"no agent offers capability|no such capability"):
            await bus.send(text_message("agent:me", name("capability:none")))
        async with bus.serving():
            await bus.send(failing)
            await _until(lambda: any(letter.id == failing.id for letter in letters))

    letters: list[Any] = []
    _run(bus, lambda: _watching_dead_letters(transport, letters, main))
    assert attempts == [failing.id] * 3
    by_id = {letter.id: letter for letter in letters}
    assert "delivery failed 3 times; last error: the upstream did not answer" in (
        by_id[failing.id].reason
    )
    assert nobody in by_id[lost.id].reason

    # Redelivered once its recipient exists, it is handled.
    second = MessageBus(transport)
    second.register(nobody, handle)

    async def redeliver() -> None:
        await second.redeliver(by_id[lost.id].seq)
        async with second.serving():
            await _until(lambda: got == [lost.id])

    _run(second, redeliver)
    assert got == [lost.id]


def test_rules_route_by_content_and_header_then_to_the_default_then_to_dead_letters(
    transport: Transport, name: Callable[[str], str]
) -> None:
    billing, oncall, general = name("agent:billing"), name("agent:oncall"), name("agent:general")
    triage, strict = name("agent:triage"), name("agent:strict")
    routes = MessageRoutes(
        address=triage,
        rules=[
            RouteRule(to=billing, when_data={"order.kind": "invoice"}),
            RouteRule(to=oncall, when_header={"severity": "high"}),
            RouteRule(to=oncall, when_text=r"\b(outage|down)\b"),
        ],
        default=general,
    )
    no_default = MessageRoutes(address=strict, rules=[RouteRule(to=billing, when_text="pay")])
    bus = MessageBus(transport, routes=[routes, no_default])
    got: dict[str, list[str]] = {billing: [], oncall: [], general: []}

    def collect(address: str) -> Callable[[Envelope], Awaitable[list[TextPart]]]:
        async def handle(message: Envelope) -> list[TextPart]:
            got[address].append(message.text())
            return [TextPart(text=f"{address} took it")]

        return handle

    for address in got:
        bus.register(address, collect(address))

    def to_triage(text: str, **fields: Any) -> Envelope:
        return text_message("agent:me", triage, text, **fields)

    invoice = Envelope(
        sender=parse_address("agent:me"),
        recipient=parse_address(triage),
        kind="event",
        parts=[DataPart(data={"order": {"kind": "invoice", "id": 7}})],
    )
    unmatched = text_message("agent:me", strict, "hello")

    async def main() -> Envelope:
        async with bus.serving():
            await bus.send(invoice)
            await bus.send(to_triage("printer jam", headers={"severity": "high"}))
            await bus.send(to_triage("the site is down"))
            reply = await bus.request(to_triage("a question", kind="request"), 20)
            with pytest.raises(MessageRejected, match=r"no rule of the routes for .* matched"):
                await bus.send(unmatched)
            await _until(lambda: len(got[billing]) == 1 and len(got[oncall]) == 2)
        return reply

    reply = _run(bus, main)
    assert got[billing] == ['{"order": {"id": 7, "kind": "invoice"}}']
    assert sorted(got[oncall]) == ["printer jam", "the site is down"]
    assert got[general] == ["a question"]
    assert reply.text() == f"{general} took it"
    assert str(reply.sender) == general
    letters = anyio.run(transport.dead_letters)
    assert [letter.id for letter in letters] == [unmatched.id]


def test_routes_refuse_rules_that_could_not_work() -> None:
    with pytest.raises(ValueError, match="has no condition"):
        RouteRule(to="agent:x")
    with pytest.raises(ValueError, match="when_text: not a regular expression"):
        RouteRule(to="agent:x", when_text="(")
    with pytest.raises(ValueError, match="is a person; route to an agent"):
        RouteRule(to="person:ada", when_text="x")
    with pytest.raises(ValueError, match="address: 'topic:x' is not an agent address"):
        MessageRoutes(address="topic:x")
    with pytest.raises(ValueError, match="unknown field 'defualt'; did you mean 'default'"):
        MessageRoutes(address="agent:x", defualt="agent:y")


def test_a_body_that_fails_the_recipients_schema_is_refused_naming_the_field(
    transport: Transport, name: Callable[[str], str]
) -> None:
    bus = MessageBus(transport)
    orders = name("agent:orders")
    handled: list[Any] = []
    schema = {
        "type": "object",
        "required": ["order_id"],
        "properties": {"order_id": {"type": "integer"}},
    }

    async def take(message: Envelope) -> list[TextPart]:
        handled.append(message.parts[0])
        return [TextPart(text="taken")]

    bus.register(orders, take, accepts=schema)

    def order(data: Any, kind: str = "request") -> Envelope:
        return Envelope(
            sender=parse_address("agent:me"),
            recipient=parse_address(orders),
            kind=kind,
            parts=[DataPart(data=data)],
        )

    canary = "sk-schema-canary-5c1d9e7a2b"
    bad_event = order({"order_id": canary}, kind="event")

    async def main() -> Envelope:
        async with bus.serving():
            good = await bus.request(order({"order_id": 7}), 20)
            with pytest.raises(MessageRejected, match=r"parts\[0\]\.data\.order_id: fails 'type'"):
                await bus.request(order({"order_id": "seven"}), 20)
            await bus.send(bad_event)
            await _until(lambda: any(d.id == bad_event.id for d in letters))
        return good

    letters: list[Any] = []
    good = _run(bus, lambda: _watching_dead_letters(transport, letters, main))
    assert good.text() == "taken"
    assert len(handled) == 1  # the refused ones never reached the handler
    reason = next(letter.reason for letter in letters if letter.id == bad_event.id)
    assert "parts[0].data.order_id: fails 'type'" in reason
    assert canary not in reason
    with pytest.raises(ConfigurationError, match="accepts: not a JSON Schema"):
        bus.register(name("agent:bad"), take, accepts={"type": 5})
