"""Gateway tokens: issued once, stored only as a password hash, checked on every request.

A token reads ``aiorch_<id>_<secret>``: the id finds its record, the secret proves it.
The store keeps the id, name, role, expiry and revocation, and an scrypt hash of the
secret (a memory-hard password hash from the standard library, salted per token), never
the token. The first request with a token pays for scrypt once per gateway process; later
ones compare a SHA-256 digest held in memory, so a request costs a row read, not a
password hash. Expiry is checked on every request against the token's row, which is read
again at most a second after the last read, so a revocation takes effect within a second.

The store is an SQLite file in the data directory by default, or the database
``AIORCH_GATEWAY_STORE_URL`` names (PostgreSQL for several gateways).

Example:
    ```python
    from datetime import timedelta
    from pathlib import Path
    from tempfile import mkdtemp

    from aiorch.gateway.roles import Role
    from aiorch.gateway.tokens import TokenStore

    store = TokenStore(f"sqlite:///{Path(mkdtemp()) / 'tokens.sqlite'}")
    issued = store.create("ci", Role.OPERATOR, expires_in=timedelta(days=30))
    print(store.verify(issued.token.get_secret_value()).role)  # operator
    ```
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, SecretStr
from sqlalchemy import Column, Float, MetaData, String, Table, create_engine, insert, select, update
from sqlalchemy.engine import Engine, RowMapping

from aiorch.core.errors import ConfigurationError
from aiorch.core.models import AiorchModel
from aiorch.core.settings import load_settings
from aiorch.gateway.errors import AuthenticationFailed
from aiorch.gateway.roles import Role

PREFIX = "aiorch"
TOKEN_PATTERN = re.compile(r"aiorch_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
# scrypt's cost: 16 MiB and about 50 ms here, paid once per token and gateway process.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
# How long a token's row is trusted before it is read again: a revocation takes effect
# within this long, and a busy gateway reads each row about once a second.
ROW_SECONDS = 1.0
_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

metadata = MetaData()
tokens = Table(
    "aiorch_gateway_tokens",
    metadata,
    Column("id", String(12), primary_key=True),
    Column("name", String(200), nullable=False, index=True),
    Column("role", String(20), nullable=False),
    Column("secret_hash", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
    Column("rotated_to", String(12), nullable=True),
)

TokenState = Literal["active", "expired", "revoked"]


class TokenRecord(AiorchModel):
    """What the store knows of a token: everything but the token."""

    model_config = ConfigDict(frozen=True, hide_input_in_errors=True)

    id: str
    name: str
    role: Role
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    rotated_to: str | None = None

    def state(self, now: datetime) -> TokenState:
        """Whether the token is usable at ``now``."""
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


class IssuedToken(AiorchModel):
    """A new token: shown once, then only its record remains."""

    record: TokenRecord
    token: SecretStr


class Principal(AiorchModel):
    """Who a verified token speaks for."""

    model_config = ConfigDict(frozen=True, hide_input_in_errors=True)

    token_id: str
    name: str
    role: Role


def parse_duration(text: str, field: str = "--expires") -> timedelta | None:
    """``30d``, ``12h``, ``90m``, ``2w`` or ``1d12h`` as a duration; ``never`` as None.

    Raises:
        ConfigurationError: the text is none of these (naming ``field``).
    """
    if text.strip().lower() == "never":
        return None
    parts = _DURATION.findall(text.strip().lower())
    if not parts or "".join(n + u for n, u in parts) != text.strip().lower():
        raise ConfigurationError(
            f"{field}: {text!r} is not a duration; write it as 30d, 12h, 90m, 2w, 1d12h or never"
        )
    duration = timedelta(**{_UNITS[u]: int(n) for n, u in parts})
    if duration <= timedelta(0):
        raise ConfigurationError(f"{field}: the duration must be longer than zero (or never)")
    return duration


def _hash(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)


def _encode_hash(secret: str) -> str:
    salt = secrets.token_bytes(16)
    encode = base64.b64encode
    return f"scrypt:{encode(salt).decode()}:{encode(_hash(secret, salt)).decode()}"


def _matches(secret: str, stored: str) -> bool:
    _, salt, digest = stored.split(":")
    return hmac.compare_digest(_hash(secret, base64.b64decode(salt)), base64.b64decode(digest))


def _moment(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


class TokenStore:
    """Token records in an SQL database (SQLite by default, PostgreSQL when configured)."""

    _shared: ClassVar[dict[str, TokenStore]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, url: str) -> None:
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        metadata.create_all(self.engine)
        # Digests of tokens this process has checked against their scrypt hash: memory
        # only, so a stolen database still needs the hash broken.
        self._verified: dict[str, bytes] = {}
        # Rows of known tokens, with when they were read (ids nobody holds are never kept).
        self._rows: dict[str, tuple[float, Any]] = {}

    @classmethod
    def default(cls) -> TokenStore:
        """The store the settings name (one per URL and process)."""
        settings = load_settings()
        url = settings.database_url(settings.gateway_store_url, "gateway.sqlite")
        with cls._shared_lock:
            if url not in cls._shared:
                cls._shared[url] = cls(url)
            return cls._shared[url]

    def create(
        self,
        name: str,
        role: Role,
        *,
        expires_in: timedelta | None,
        now: datetime | None = None,
    ) -> IssuedToken:
        """Issue a token; its value is in the result and nowhere else."""
        if not name.strip():
            raise ConfigurationError("--name: a token needs a name (who or what uses it)")
        issued_at = (now or datetime.now(UTC)).timestamp()
        expires_at = None if expires_in is None else issued_at + expires_in.total_seconds()
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        with self.engine.begin() as connection:
            connection.execute(
                insert(tokens).values(
                    id=token_id,
                    name=name,
                    role=role.value,
                    secret_hash=_encode_hash(secret),
                    created_at=issued_at,
                    expires_at=expires_at,
                )
            )
        return IssuedToken(
            record=self._record(token_id), token=SecretStr(f"{PREFIX}_{token_id}_{secret}")
        )

    def records(self) -> list[TokenRecord]:
        """Every token's record, oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(tokens).order_by(tokens.c.created_at)).mappings()
            return [self._from_row(row) for row in rows]

    def _record(self, token_id: str) -> TokenRecord:
        with self.engine.connect() as connection:
            row = connection.execute(select(tokens).where(tokens.c.id == token_id)).mappings()
            found = row.first()
        if found is None:
            raise ConfigurationError(f"no token with id {token_id!r}; `aiorch auth token list`")
        return self._from_row(found)

    @staticmethod
    def _from_row(values: RowMapping) -> TokenRecord:
        return TokenRecord(
            id=values["id"],
            name=values["name"],
            role=Role(values["role"]),
            created_at=datetime.fromtimestamp(values["created_at"], UTC),
            expires_at=_moment(values["expires_at"]),
            revoked_at=_moment(values["revoked_at"]),
            rotated_to=values["rotated_to"],
        )

    def _active(self, id_or_name: str, now: datetime) -> list[TokenRecord]:
        chosen = [
            record
            for record in self.records()
            if id_or_name in (record.id, record.name) and record.state(now) == "active"
        ]
        if not chosen:
            raise ConfigurationError(
                f"no active token has the id or name {id_or_name!r}; "
                "`aiorch auth token list` shows them"
            )
        return chosen

    def revoke(self, id_or_name: str, *, now: datetime | None = None) -> list[TokenRecord]:
        """Revoke the active token with this id, or every active one with this name."""
        at = now or datetime.now(UTC)
        chosen = self._active(id_or_name, at)
        with self.engine.begin() as connection:
            connection.execute(
                update(tokens)
                .where(tokens.c.id.in_([record.id for record in chosen]))
                .values(revoked_at=at.timestamp())
            )
        return [self._record(record.id) for record in chosen]

    def rotate(
        self,
        id_or_name: str,
        *,
        grace: timedelta = timedelta(0),
        now: datetime | None = None,
    ) -> IssuedToken:
        """Issue a successor with the same name, role and lifetime; the old one ends.

        The old token keeps working for ``grace`` (time to hand the new one out), then
        counts as revoked.
        """
        at = now or datetime.now(UTC)
        chosen = self._active(id_or_name, at)
        if len(chosen) > 1:
            raise ConfigurationError(
                f"{len(chosen)} active tokens are named {id_or_name!r}; rotate one by its id "
                f"({', '.join(record.id for record in chosen)})"
            )
        old = chosen[0]
        lifetime = None if old.expires_at is None else old.expires_at - old.created_at
        issued = self.create(old.name, old.role, expires_in=lifetime, now=at)
        with self.engine.begin() as connection:
            connection.execute(
                update(tokens)
                .where(tokens.c.id == old.id)
                .values(revoked_at=(at + grace).timestamp(), rotated_to=issued.record.id)
            )
        return issued

    def _row(self, token_id: str) -> Any:
        cached = self._rows.get(token_id)
        read_at = time.monotonic()
        if cached is not None and read_at - cached[0] < ROW_SECONDS:
            return cached[1]
        with self.engine.connect() as connection:
            row = connection.execute(
                select(
                    tokens.c.name,
                    tokens.c.role,
                    tokens.c.secret_hash,
                    tokens.c.expires_at,
                    tokens.c.revoked_at,
                ).where(tokens.c.id == token_id)
            ).first()
        if row is not None:
            self._rows[token_id] = (read_at, row)
        return row

    def is_warm(self, token: str) -> bool:
        """Whether verifying ``token`` now costs neither a hash nor a database read."""
        matched = TOKEN_PATTERN.fullmatch(token)
        if matched is None:
            return False
        token_id = matched.group(1)
        cached = self._rows.get(token_id)
        known = self._verified.get(token_id)
        return (
            cached is not None
            and time.monotonic() - cached[0] < ROW_SECONDS
            and known is not None
            and hmac.compare_digest(known, hashlib.sha256(token.encode()).digest())
        )

    def verify(self, token: str, *, now: float | None = None) -> Principal:
        """Who ``token`` speaks for.

        Raises:
            AuthenticationFailed: the token is malformed, unknown, forged, expired or
                revoked (``reason`` says which, for the audit; the caller hears none of it).
        """
        matched = TOKEN_PATTERN.fullmatch(token)
        if matched is None:
            raise AuthenticationFailed("malformed")
        token_id, secret = matched.groups()
        row = self._row(token_id)
        if row is None:
            raise AuthenticationFailed("unknown", token_id)
        digest = hashlib.sha256(token.encode()).digest()
        known = self._verified.get(token_id)
        if known is None or not hmac.compare_digest(known, digest):
            if not _matches(secret, row.secret_hash):
                raise AuthenticationFailed("forged", token_id)
            self._verified[token_id] = digest
        moment = time.time() if now is None else now
        if row.revoked_at is not None and row.revoked_at <= moment:
            raise AuthenticationFailed("revoked", token_id)
        if row.expires_at is not None and row.expires_at <= moment:
            raise AuthenticationFailed("expired", token_id)
        return Principal(token_id=token_id, name=row.name, role=Role(row.role))
