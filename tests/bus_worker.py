"""One process serving a capability on a shared message store, for the multi-process tests.

    python -m tests.bus_worker STORE NAME LEDGER hang|finish [AMQP_URL]

Registers ``agent:NAME`` offering ``work`` (or ``$AIORCH_TEST_CAPABILITY``; leases of
2 s) and serves until killed. Each message handled writes ``start NAME TEXT`` to LEDGER,
then either waits forever (hang: the test kills the process mid-message) or writes
``done NAME TEXT``. With an AMQP URL the bus runs on that RabbitMQ broker, STORE holding
its ledger.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio

from aiorch.tasks.messaging.bus import MessageBus
from aiorch.tasks.messaging.embedded import EmbeddedTransport
from aiorch.tasks.messaging.envelope import Envelope, TextPart
from aiorch.tasks.messaging.rabbitmq import RabbitTransport
from aiorch.tasks.messaging.store import MessageStore


def main(argv: list[str]) -> None:
    """Serve as the arguments say."""
    store_path, name, ledger, mode, *broker = argv

    async def handle(message: Envelope) -> None:
        part = message.parts[0]
        text = part.text if isinstance(part, TextPart) else "?"
        with Path(ledger).open("a") as lines:
            lines.write(f"start {name} {text}\n")
        if mode == "hang":
            await anyio.sleep_forever()
        with Path(ledger).open("a") as lines:
            lines.write(f"done {name} {text}\n")

    store = MessageStore(Path(store_path))
    transport = RabbitTransport(broker[0], ledger=store) if broker else EmbeddedTransport(store)
    bus = MessageBus(transport, lease_seconds=2)
    capability = os.environ.get("AIORCH_TEST_CAPABILITY", "work")
    bus.register(f"agent:{name}", handle, capabilities=[capability])
    anyio.run(bus.serve)


if __name__ == "__main__":
    main(sys.argv[1:])
