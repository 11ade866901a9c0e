"""What a backup holds: the Prefect database, aiorch's stores, the stored results.

Example:
    ```python
    from pathlib import Path

    from aiorch.backup.sources import BackupSource

    source = BackupSource(name="breakers", database_url="sqlite:////tmp/breakers.sqlite")
    print(source.kind)  # sqlite
    print(BackupSource(name="results", directory=Path("/tmp/storage")).kind)  # directory
    ```
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, SecretStr, model_validator

from aiorch.core.models import AiorchModel
from aiorch.core.settings import load_settings

SourceKind = Literal["sqlite", "postgres", "directory"]
# Prefect's async drivers name the same databases pg_dump and sqlite3 read.
_SCHEMES: dict[str, SourceKind] = {
    "sqlite": "sqlite",
    "sqlite+aiosqlite": "sqlite",
    "sqlite+pysqlite": "sqlite",
    "postgresql": "postgres",
    "postgresql+asyncpg": "postgres",
    "postgresql+psycopg": "postgres",
    "postgresql+psycopg2": "postgres",
}


class BackupSource(AiorchModel):
    """One thing to back up: a database (by URL) or a directory of files."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,40}$", description="Its name in the manifest.")
    database_url: SecretStr | None = Field(
        default=None, description="SQLAlchemy URL of an SQLite or PostgreSQL database."
    )
    directory: Path | None = Field(default=None, description="A directory, copied whole.")

    @model_validator(mode="after")
    def _one_place(self) -> BackupSource:
        if (self.database_url is None) == (self.directory is None):
            raise ValueError(f"source {self.name!r}: give exactly one of database_url, directory")
        if self.database_url is not None:
            scheme = self.database_url.get_secret_value().split("://", 1)[0]
            if scheme not in _SCHEMES:
                raise ValueError(
                    f"source {self.name!r}: database_url must be SQLite or PostgreSQL "
                    f"(got the scheme {scheme!r})"
                )
        return self

    @property
    def kind(self) -> SourceKind:
        """How it is snapshotted: SQLite's backup API, pg_dump, or a tar of the files."""
        if self.database_url is None:
            return "directory"
        return _SCHEMES[self.database_url.get_secret_value().split("://", 1)[0]]

    def sqlite_path(self) -> Path:
        """The file of an SQLite source."""
        assert self.database_url is not None
        return Path(self.database_url.get_secret_value().split("://", 1)[1].removeprefix("/"))


def default_sources() -> list[BackupSource]:
    """This machine's Prefect database, aiorch's stores and the stored results.

    The Prefect database and result storage are read from Prefect's settings, aiorch's
    stores from aiorch's (the breaker store, the gateway's tokens, the message store).
    Locks, temporary files, cache volumes and probed capabilities are left out: they are
    made again on use.
    """
    from prefect.settings import get_current_settings

    prefect = get_current_settings()
    aiorch = load_settings()
    sources = [
        BackupSource(
            name="prefect-database",
            database_url=_secret(prefect.server.database.connection_url),
        ),
        BackupSource(
            name="breakers",
            database_url=aiorch.database_url(aiorch.breaker_store_url, "breakers.sqlite"),
        ),
        BackupSource(
            name="gateway-tokens",
            database_url=aiorch.database_url(aiorch.gateway_store_url, "gateway.sqlite"),
        ),
        BackupSource(
            name="messages",
            database_url=f"sqlite:///{aiorch.resolved_data_dir() / 'messages.sqlite'}",
        ),
        BackupSource(name="results", directory=prefect.results.local_storage_path),
    ]
    return sources


def _secret(value: SecretStr | str | None) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return str(value)
