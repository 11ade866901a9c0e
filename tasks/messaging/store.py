"""Where the embedded bus keeps its messages: one SQLite file per machine.

Every process on the machine that opens the same file shares the queues: an agent's
queue (``agent:TYPE/KEY``), a capability's (``capability:NAME``, drained by every agent
offering it: competing consumers) and the dead letters. Each write is one ``BEGIN
IMMEDIATE`` transaction, so two consumers never lease the same message.

Delivery rules, kept here so that every consumer follows them:

- **At least once.** A leased message that is not acknowledged before its lease ends
  is leased again (its consumer died or timed out). A message id already in a queue, or
  already handled from it, is not queued again: a re-sent message is acknowledged and
  not handled twice.
- **Priority without starvation.** The next message is the one with the highest
  priority after aging: a message gains one level for every ``aging_seconds`` it has
  waited, up to the top, so a flood of high-priority messages delays a low one by at
  most ``9 x aging_seconds``.
- **Order per sender and recipient.** Among one sender's messages of one priority to
  one queue, only the oldest is eligible, and a message in flight holds back the ones
  behind it, even with several consumers.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiorch.core.settings import load_settings
from aiorch.tasks.messaging.envelope import HIGHEST_PRIORITY, Envelope
from aiorch.tasks.messaging.transport import DeadLetter, Delivery

BUSY_TIMEOUT_SECONDS = 10
STORE_FILE = "messages.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS aiorch_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    id TEXT NOT NULL,
    sender TEXT NOT NULL,
    priority INTEGER NOT NULL,
    enqueued_at REAL NOT NULL,
    expires_at REAL,
    lease_until REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    envelope TEXT NOT NULL,
    UNIQUE (queue, id)
);
CREATE INDEX IF NOT EXISTS aiorch_messages_queue ON aiorch_messages (queue, sender, priority, seq);
CREATE TABLE IF NOT EXISTS aiorch_handled (
    queue TEXT NOT NULL, id TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (queue, id)
);
CREATE TABLE IF NOT EXISTS aiorch_dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    id TEXT NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL,
    envelope TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS aiorch_subscriptions (
    queue TEXT NOT NULL, pattern TEXT NOT NULL, hear_own INTEGER NOT NULL,
    PRIMARY KEY (queue, pattern)
);
CREATE TABLE IF NOT EXISTS aiorch_participants (
    queue TEXT PRIMARY KEY, capabilities TEXT NOT NULL
);
"""


def topic_matches(pattern: str, topic: str) -> bool:
    """AMQP topic matching: ``*`` is one dot-separated word, ``#`` any number of them."""
    words, parts = topic.split("."), pattern.split(".")

    def match(word: int, part: int) -> bool:
        if part == len(parts):
            return word == len(words)
        if parts[part] == "#":
            return any(match(rest, part + 1) for rest in range(word, len(words) + 1))
        if word == len(words):
            return False
        return parts[part] in {"*", words[word]} and match(word + 1, part + 1)

    return match(0, 0)


class MessageStore:
    """The SQLite file holding the queues, subscriptions and dead letters."""

    def __init__(self, path: Path, aging_seconds: float = 5.0) -> None:
        self.path = path
        self.aging_seconds = aging_seconds
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connection().executescript(_SCHEMA)  # each statement commits on its own

    @classmethod
    def default(cls) -> MessageStore:
        """The machine's store: ``messages.sqlite`` in aiorch's data directory."""
        return cls(load_settings().resolved_data_dir() / STORE_FILE)

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None
            )
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            self._local.connection = connection
        return connection

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def register(self, queue: str, capabilities: list[str]) -> None:
        """Declare a participant's queue and the capabilities it offers."""
        with self._transaction() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO aiorch_participants VALUES (?, ?)",
                (queue, "\n".join(sorted(capabilities))),
            )

    def unregister(self, queue: str) -> None:
        """Forget a participant's queue (a request's reply inbox, once answered)."""
        with self._transaction() as connection:
            connection.execute("DELETE FROM aiorch_participants WHERE queue = ?", (queue,))
            connection.execute("DELETE FROM aiorch_messages WHERE queue = ?", (queue,))

    def registered(self, queue: str) -> bool:
        """Whether a participant declared ``queue``."""
        row = self._connection().execute(
            "SELECT 1 FROM aiorch_participants WHERE queue = ?", (queue,)
        )
        return row.fetchone() is not None

    def offered(self, capability: str) -> bool:
        """Whether any participant offers ``capability``."""
        for (capabilities,) in self._connection().execute(
            "SELECT capabilities FROM aiorch_participants"
        ):
            if capability in str(capabilities).split("\n"):
                return True
        return False

    def subscribe(self, queue: str, pattern: str, hear_own: bool) -> None:
        """Deliver events on topics matching ``pattern`` to ``queue``."""
        with self._transaction() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO aiorch_subscriptions VALUES (?, ?, ?)",
                (queue, pattern, int(hear_own)),
            )

    def subscribers(self, topic: str, sender: str) -> list[str]:
        """The queues subscribed to ``topic``, without the sender's unless it hears its own."""
        found = set()
        for queue, pattern, hear_own in self._connection().execute(
            "SELECT queue, pattern, hear_own FROM aiorch_subscriptions"
        ):
            if topic_matches(str(pattern), topic) and (queue != sender or hear_own):
                found.add(str(queue))
        return sorted(found)

    def enqueue(self, queue: str, envelope: Envelope, now: float) -> bool:
        """Queue ``envelope``; False when that id is queued there already or was handled."""
        with self._transaction() as connection:
            handled = connection.execute(
                "SELECT 1 FROM aiorch_handled WHERE queue = ? AND id = ?", (queue, envelope.id)
            ).fetchone()
            if handled is not None:
                return False
            inserted = connection.execute(
                "INSERT OR IGNORE INTO aiorch_messages "
                "(queue, id, sender, priority, enqueued_at, expires_at, envelope) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    queue,
                    envelope.id,
                    str(envelope.sender),
                    envelope.priority,
                    now,
                    envelope.expires_at.timestamp() if envelope.expires_at else None,
                    envelope.model_dump_json(),
                ),
            )
            return inserted.rowcount == 1

    def lease(
        self, queues: list[str], now: float, lease_seconds: float, max_attempts: int
    ) -> Delivery | None:
        """The next message of ``queues`` by the rules above, leased; None if none is due.

        Expired messages, and messages leased ``max_attempts`` times already, go to the
        dead letters on the way.
        """
        # Only "?" placeholders are joined into the SQL (bandit's B608 below); every value
        # is a bound parameter.
        marks = ",".join("?" for _ in queues)
        with self._transaction() as connection:
            for seq, queue, message_id, envelope, reason in connection.execute(
                f"SELECT seq, queue, id, envelope, "  # nosec B608
                f"CASE WHEN expires_at <= ? THEN 'expired' "
                f"ELSE 'delivery failed ' || attempts || ' times; last error: ' || "
                f"COALESCE(last_error, 'the consumer did not acknowledge in time') END "
                f"FROM aiorch_messages WHERE queue IN ({marks}) AND "
                f"(lease_until IS NULL OR lease_until <= ?) AND "
                f"(expires_at <= ? OR attempts >= ?)",
                (now, *queues, now, now, max_attempts),
            ).fetchall():
                self._bury(connection, seq, queue, message_id, envelope, reason, now)
            row = connection.execute(
                f"SELECT seq, queue, envelope, attempts "  # nosec B608
                f"FROM aiorch_messages AS m "
                f"WHERE queue IN ({marks}) AND (lease_until IS NULL OR lease_until <= ?) "
                f"AND NOT EXISTS (SELECT 1 FROM aiorch_messages AS before WHERE "
                f"before.queue = m.queue AND before.sender = m.sender AND "
                f"before.priority = m.priority AND before.seq < m.seq) "
                f"ORDER BY MIN(?, priority + (? - enqueued_at) / ?) DESC, seq ASC LIMIT 1",
                (*queues, now, HIGHEST_PRIORITY, now, self.aging_seconds),
            ).fetchone()
            if row is None:
                return None
            seq, queue, envelope, attempts = row
            connection.execute(
                "UPDATE aiorch_messages SET lease_until = ?, attempts = attempts + 1 WHERE seq = ?",
                (now + lease_seconds, seq),
            )
        return Delivery(
            receipt=seq,
            queue=queue,
            envelope=Envelope.model_validate_json(envelope),
            attempts=attempts + 1,
        )

    def ack(self, delivery: Delivery, now: float) -> None:
        """The message was handled: remove it, and remember its id as handled."""
        with self._transaction() as connection:
            connection.execute("DELETE FROM aiorch_messages WHERE seq = ?", (delivery.receipt,))
            self._remember(connection, delivery.queue, delivery.envelope.id, now)

    @staticmethod
    def _remember(connection: sqlite3.Connection, queue: str, message_id: str, now: float) -> None:
        connection.execute(
            "INSERT OR IGNORE INTO aiorch_handled VALUES (?, ?, ?)", (queue, message_id, now)
        )

    def remember_all(self, rows: list[tuple[str, str, float]]) -> None:
        """Record each ``(queue, message_id, at)`` as handled (a broker's deliveries)."""
        with self._transaction() as connection:
            for queue, message_id, now in rows:
                self._remember(connection, queue, message_id, now)

    def handled(self, queue: str, message_id: str) -> bool:
        """Whether ``message_id`` was handled from ``queue`` already."""
        row = self._connection().execute(
            "SELECT 1 FROM aiorch_handled WHERE queue = ? AND id = ?", (queue, message_id)
        )
        return row.fetchone() is not None

    def extend(self, delivery: Delivery, error: str, until: float) -> Delivery:
        """Handling failed and is tried again: the lease holds until ``until``, one more attempt."""
        with self._transaction() as connection:
            connection.execute(
                "UPDATE aiorch_messages SET lease_until = ?, last_error = ?, "
                "attempts = attempts + 1 WHERE seq = ?",
                (until, error[:2000], delivery.receipt),
            )
        return delivery.model_copy(update={"attempts": delivery.attempts + 1})

    def bury(self, delivery: Delivery, reason: str, now: float) -> None:
        """Move a leased message to the dead letters with ``reason``."""
        with self._transaction() as connection:
            self._bury(
                connection,
                delivery.receipt,
                delivery.queue,
                delivery.envelope.id,
                delivery.envelope.model_dump_json(),
                reason,
                now,
            )

    def dead_letter(self, queue: str, envelope: Envelope, reason: str, now: float) -> None:
        """Keep a message that will not be delivered, with the reason."""
        with self._transaction() as connection:
            connection.execute(
                "INSERT INTO aiorch_dead_letters (queue, id, reason, at, envelope) "
                "VALUES (?, ?, ?, ?, ?)",
                (queue, envelope.id, reason, now, envelope.model_dump_json()),
            )

    @staticmethod
    def _bury(
        connection: sqlite3.Connection,
        seq: int,
        queue: str,
        message_id: str,
        envelope: str,
        reason: str,
        now: float,
    ) -> None:
        connection.execute("DELETE FROM aiorch_messages WHERE seq = ?", (seq,))
        connection.execute(
            "INSERT INTO aiorch_dead_letters (queue, id, reason, at, envelope) "
            "VALUES (?, ?, ?, ?, ?)",
            (queue, message_id, reason, now, envelope),
        )

    def dead_letters(self) -> list[DeadLetter]:
        """Every dead letter, oldest first."""
        return [
            DeadLetter(
                seq=seq,
                queue=queue,
                id=message_id,
                reason=reason,
                at=at,
                envelope=Envelope.model_validate_json(envelope),
            )
            for seq, queue, message_id, reason, at, envelope in self._connection().execute(
                "SELECT seq, queue, id, reason, at, envelope FROM aiorch_dead_letters ORDER BY seq"
            )
        ]

    def take_dead_letter(self, seq: int) -> DeadLetter | None:
        """Remove dead letter ``seq`` (to deliver it again); None if there is none."""
        found = [letter for letter in self.dead_letters() if letter.seq == seq]
        if not found:
            return None
        with self._transaction() as connection:
            connection.execute("DELETE FROM aiorch_dead_letters WHERE seq = ?", (seq,))
        return found[0]

    def depth(self, queue: str) -> int:
        """Messages waiting or in flight in ``queue``."""
        (count,) = (
            self._connection()
            .execute("SELECT COUNT(*) FROM aiorch_messages WHERE queue = ?", (queue,))
            .fetchone()
        )
        return int(count)

    def depths(self) -> dict[str, int]:
        """Messages waiting or in flight, by queue (queues holding none are left out)."""
        return self._counts("SELECT queue, COUNT(*) FROM aiorch_messages GROUP BY queue")

    def dead_letter_counts(self) -> dict[str, int]:
        """Dead letters, by the queue they were meant for."""
        return self._counts("SELECT queue, COUNT(*) FROM aiorch_dead_letters GROUP BY queue")

    def _counts(self, query: str) -> dict[str, int]:
        return {queue: int(count) for queue, count in self._connection().execute(query)}
