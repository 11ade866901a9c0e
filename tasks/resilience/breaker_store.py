"""Where circuit breakers keep their state: one SQL database shared by every process.

The embedded default is an SQLite file under ``AIORCH_DATA_DIR`` (processes on one
machine); ``AIORCH_BREAKER_STORE_URL`` points at PostgreSQL for several machines
(``postgresql+psycopg://user:password@host/db``; install the ``postgres`` extra). Every
decision that may write is one transaction that locks the breaker's row (``BEGIN
IMMEDIATE`` on SQLite, ``SELECT ... FOR UPDATE`` on PostgreSQL), so two processes never
both take the last half-open probe; reads (is it closed? is the window all successes?)
take no lock.

A half-open probe holds a lease row (``aiorch_breaker_probes``) until its outcome is
recorded; a lease that expires (its process died, or the outcome could not be stored)
frees the slot for another caller. When the database cannot be reached, every operation
raises :class:`BreakerStoreUnavailable`, never a raw driver error.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, TypeVar

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    event,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from aiorch.core.errors import AiorchError
from aiorch.core.settings import load_settings

# How long a caller waits for the write lock, in all, before the store gives up.
LOCK_WAIT_SECONDS = 10
RETRY_CAP_SECONDS = 0.5
READ_ONLY = "aiorch_read_only"

T = TypeVar("T")

metadata = MetaData()
breakers = Table(
    "aiorch_breakers",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("state", String(20), nullable=False),
    Column("opened_at", Float, nullable=True),
    Column("probes_started", Integer, nullable=False, default=0),
    Column("probes_succeeded", Integer, nullable=False, default=0),
    Column("updated_at", Float, nullable=False),
    # When an open breaker starts probing (opened_at + the wait it opened with).
    Column("reopens_at", Float, nullable=True),
)
probes = Table(
    "aiorch_breaker_probes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, index=True),
    Column("expires_at", Float, nullable=False),
)
outcomes = Table(
    "aiorch_breaker_calls",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, index=True),
    Column("at", Float, nullable=False),
    Column("failed", Boolean, nullable=False),
    Column("slow", Boolean, nullable=False),
)


class BreakerStoreUnavailable(AiorchError):
    """The database breakers share could not be reached or stayed locked too long."""

    kind = "breaker-store-unavailable"
    title = "Circuit breaker store unavailable"
    status = 503
    retryable = True


class BreakerStore:
    """An SQL database holding breaker states and their recent calls."""

    _shared: ClassVar[dict[str, BreakerStore]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, url: str) -> None:
        self.url = url
        # Its own generator: the shared one's state belongs to the application.
        self._jitter = random.Random()
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            _immediate_transactions(self.engine)
        # Several processes may open a new store at once (workers starting together).
        self.retrying(self._create_schema)

    def _create_schema(self) -> None:
        metadata.create_all(self.engine)
        # A store made by an older aiorch lacks the columns added since.
        present = {column["name"] for column in inspect(self.engine).get_columns("aiorch_breakers")}
        with self.engine.begin() as connection:
            for column in breakers.columns:
                if column.name not in present:
                    kind = column.type.compile(dialect=self.engine.dialect)
                    connection.exec_driver_sql(
                        f"ALTER TABLE aiorch_breakers ADD COLUMN {column.name} {kind}"
                    )

    @classmethod
    def default(cls) -> BreakerStore:
        """The store the settings name (created on first use, one per URL and process)."""
        settings = load_settings()
        url = settings.database_url(settings.breaker_store_url, "breakers.sqlite")
        with cls._shared_lock:
            if url not in cls._shared:
                cls._shared[url] = cls(url)
            return cls._shared[url]

    @property
    def kind(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @contextmanager
    def locked(self, name: str, now: float) -> Iterator[tuple[Connection, dict[str, Any]]]:
        """A transaction holding the breaker's row, created closed if it is new."""
        with self.engine.begin() as connection:
            row = self._row(connection, name)
            if row is None:
                try:
                    with connection.begin_nested():
                        connection.execute(
                            insert(breakers).values(
                                name=name,
                                state="closed",
                                probes_started=0,
                                probes_succeeded=0,
                                updated_at=now,
                            )
                        )
                except IntegrityError:  # another process created it first
                    pass
                row = self._row(connection, name)
            assert row is not None
            yield connection, row

    def peek(self, name: str) -> str | None:
        """The breaker's stored state, read without a lock; None if it has none yet."""

        def read() -> object:
            with self._reading() as connection:
                return connection.execute(
                    select(breakers.c.state).where(breakers.c.name == name)
                ).scalar_one_or_none()

        state = self.retrying(read)
        return None if state is None else str(state)

    def clean_window(self, name: str, size: int) -> tuple[str, bool]:
        """The breaker's state, and whether its newest ``size`` calls all succeeded in time.

        Read without a lock; a breaker with fewer calls, or none stored, is not clean.
        """

        def read() -> tuple[str, bool]:
            with self._reading() as connection:
                state = connection.execute(
                    select(breakers.c.state).where(breakers.c.name == name)
                ).scalar_one_or_none()
                newest = connection.execute(
                    select(outcomes.c.failed, outcomes.c.slow)
                    .where(outcomes.c.name == name)
                    .order_by(outcomes.c.id.desc())
                    .limit(size)
                ).all()
            clean = len(newest) == size and not any(row.failed or row.slow for row in newest)
            return str(state or "closed"), state is not None and clean

        return self.retrying(read)

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A connection whose transactions only read, so they take no write lock."""
        with self.engine.connect() as connection:
            yield connection.execution_options(**{READ_ONLY: True})

    def _row(self, connection: Connection, name: str) -> dict[str, Any] | None:
        query = select(breakers).where(breakers.c.name == name)
        if self.kind == "postgresql":
            query = query.with_for_update()
        found = connection.execute(query).mappings().first()
        return dict(found) if found is not None else None

    @staticmethod
    def set_state(connection: Connection, name: str, **values: Any) -> None:
        """Update the breaker's row."""
        connection.execute(update(breakers).where(breakers.c.name == name).values(**values))

    @staticmethod
    def add_outcome(connection: Connection, name: str, at: float, failed: bool, slow: bool) -> None:
        """Record one call in the breaker's window."""
        connection.execute(insert(outcomes).values(name=name, at=at, failed=failed, slow=slow))

    @staticmethod
    def window(
        connection: Connection, name: str, *, newest: int | None = None, since: float | None = None
    ) -> list[tuple[bool, bool]]:
        """(failed, slow) of the newest calls, by count or since a time; older ones go."""
        query = select(outcomes.c.id, outcomes.c.failed, outcomes.c.slow).where(
            outcomes.c.name == name
        )
        if since is not None:
            connection.execute(
                delete(outcomes).where(outcomes.c.name == name, outcomes.c.at < since)
            )
        rows = connection.execute(query.order_by(outcomes.c.id.desc())).all()
        if newest is not None and len(rows) > newest:
            oldest_kept = rows[newest - 1].id
            connection.execute(
                delete(outcomes).where(outcomes.c.name == name, outcomes.c.id < oldest_kept)
            )
            rows = rows[:newest]
        return [(bool(row.failed), bool(row.slow)) for row in rows]

    @staticmethod
    def clear_window(connection: Connection, name: str) -> None:
        """Forget the breaker's recent calls and probe leases (after a state change)."""
        connection.execute(delete(outcomes).where(outcomes.c.name == name))
        connection.execute(delete(probes).where(probes.c.name == name))

    @staticmethod
    def live_probes(connection: Connection, name: str, now: float) -> list[float]:
        """When each unexpired probe lease of the breaker expires; expired ones go."""
        connection.execute(delete(probes).where(probes.c.name == name, probes.c.expires_at <= now))
        return [
            float(expires_at)
            for expires_at in connection.execute(
                select(probes.c.expires_at).where(probes.c.name == name)
            ).scalars()
        ]

    @staticmethod
    def take_probe(connection: Connection, name: str, expires_at: float) -> int:
        """Lease a probe slot until ``expires_at``; the lease's id."""
        result = connection.execute(insert(probes).values(name=name, expires_at=expires_at))
        key = result.inserted_primary_key
        if key is None:  # every dialect aiorch supports returns it
            raise BreakerStoreUnavailable("the breaker store did not return the probe's id")
        return int(key[0])

    @staticmethod
    def release_probe(connection: Connection, probe_id: int) -> None:
        """Give a probe's slot back (its outcome is being recorded)."""
        connection.execute(delete(probes).where(probes.c.id == probe_id))

    def states(self) -> list[dict[str, Any]]:
        """Every breaker's row."""

        def read() -> list[dict[str, Any]]:
            with self._reading() as connection:
                return [dict(row) for row in connection.execute(select(breakers)).mappings()]

        return self.retrying(read)

    def retrying(self, action: Callable[[], T]) -> T:
        """Run ``action``, retrying for up to LOCK_WAIT_SECONDS while SQLite is busy.

        Raises:
            BreakerStoreUnavailable: the database could not be reached, or stayed
                locked past the wait.
        """
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        attempt = 0
        while True:
            try:
                return action()
            except OperationalError as error:
                if "locked" not in str(error) or time.monotonic() >= deadline:
                    raise self._unavailable(error) from None
            except DBAPIError as error:
                raise self._unavailable(error) from None
            # SQLite may answer "locked" without waiting its busy timeout (for one, while
            # another connection rebuilds the write-ahead log's index): back off, with
            # jitter. A lock really held that long uses up the deadline in one busy wait.
            time.sleep(self._jitter.uniform(0, min(RETRY_CAP_SECONDS, 0.01 * 2**attempt)))
            attempt += 1

    def _unavailable(self, error: DBAPIError) -> BreakerStoreUnavailable:
        # The driver's message may name the host, user or password: give its kind only.
        where = "AIORCH_BREAKER_STORE_URL" if self.kind != "sqlite" else "the SQLite store"
        return BreakerStoreUnavailable(
            f"the circuit breaker store ({self.kind}, {where}) is unavailable: "
            f"{type(error.orig).__name__ if error.orig is not None else type(error).__name__}; "
            "check that the database runs and the URL is right. Guarded calls are refused "
            "until it answers"
        )


def _immediate_transactions(engine: Engine) -> None:
    # pysqlite starts transactions lazily (DEFERRED), so two processes could both read
    # a breaker and then both write; BEGIN IMMEDIATE takes the write lock up front.
    @event.listens_for(engine, "connect")
    def _autocommit_driver(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute(f"PRAGMA busy_timeout = {LOCK_WAIT_SECONDS * 1000}")
        # WAL lets readers (the lock-free peek) run beside a writer, and NORMAL
        # synchronisation is durable against process crashes, which is what a
        # breaker's state needs; a power cut may lose the last transitions.
        dbapi_connection.execute("PRAGMA journal_mode = WAL")
        dbapi_connection.execute("PRAGMA synchronous = NORMAL")

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Connection) -> None:
        # Reads stay DEFERRED: under WAL they see a snapshot beside a writer instead of
        # queueing for the write lock (when every read took it, four processes peeking
        # at once queued behind one slow writer and failed at the busy timeout).
        reading = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")
