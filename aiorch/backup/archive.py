"""Take a consistent backup of the sources, check it, and put one back.

A backup is a directory ``aiorch-backup-<UTC time>`` holding one file per source and a
``manifest.json`` with their SHA-256 sums. It is written under a ``.partial`` name and
renamed only once complete, so an interrupted backup never looks like one; older
complete backups beyond ``keep`` are then removed.

- SQLite databases are copied with SQLite's online backup API: a consistent snapshot
  while the server keeps writing.
- PostgreSQL databases are dumped with ``pg_dump --format=custom`` (consistent by its
  own transaction) and restored with ``pg_restore --clean``; the password travels in
  the environment, never on the command line.
- Directories (Prefect's result storage, which holds aiorch's cached step outputs and
  durable model and tool records) are archived as a tar.

Example:
    ```python
    import sqlite3
    import tempfile
    from pathlib import Path

    from aiorch.backup.archive import create_backup, verify_backup
    from aiorch.backup.sources import BackupSource

    work = Path(tempfile.mkdtemp())
    sqlite3.connect(work / "db.sqlite").execute("create table t (x)").connection.commit()
    source = BackupSource(name="db", database_url=f"sqlite:///{work / 'db.sqlite'}")
    backup = create_backup([source], work / "backups", keep=3)
    print(verify_backup(backup).items[0].name)  # db
    ```
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import tarfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from pydantic import Field
from sqlalchemy.engine import make_url

from aiorch.backup.sources import BackupSource, SourceKind
from aiorch.core.errors import ConfigurationError
from aiorch.core.models import AiorchModel
from aiorch.core.services import postgres_program

MANIFEST = "manifest.json"
PREFIX = "aiorch-backup-"
PARTIAL = ".partial"
_SUFFIX: dict[SourceKind, str] = {"sqlite": ".sqlite", "postgres": ".dump", "directory": ".tar"}


class BackupError(ConfigurationError):
    """A backup could not be taken, checked or restored; the message says which part."""


class BackupItem(AiorchModel):
    """One source's file in a backup."""

    name: str
    kind: SourceKind
    file: str
    sha256: str
    size: int
    present: bool = Field(
        default=True,
        description="False when the source did not exist yet (an empty store was saved).",
    )


class BackupManifest(AiorchModel):
    """What a backup holds, and when and how long it took."""

    created_at: datetime = Field(description="When the snapshot started (the recovery point).")
    seconds: float = Field(description="How long taking it took.")
    aiorch_version: str
    prefect_version: str
    items: list[BackupItem]


def create_backup(sources: Sequence[BackupSource], destination: Path, keep: int = 7) -> Path:
    """Snapshot ``sources`` into a new directory under ``destination``; its path.

    Raises:
        BackupError: a source could not be read (nothing complete is left behind).
    """
    if keep < 1:
        raise BackupError(f"keep must be at least 1 (got {keep})")
    started = datetime.now(UTC)
    clock = time.monotonic()
    name = f"{PREFIX}{started:%Y%m%dT%H%M%S%fZ}"
    partial = destination / f"{name}{PARTIAL}"
    # A backup holds what the databases hold, secret block values included: owner only.
    partial.mkdir(parents=True, mode=0o700)
    try:
        items = [_snapshot(source, partial) for source in sources]
        manifest = BackupManifest(
            created_at=started,
            seconds=time.monotonic() - clock,
            aiorch_version=version("aiorch"),
            prefect_version=version("prefect"),
            items=items,
        )
        (partial / MANIFEST).write_text(manifest.model_dump_json(indent=2))
        final = destination / name
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    for old in list_backups(destination)[:-keep]:
        shutil.rmtree(old)
    return final


def list_backups(destination: Path) -> list[Path]:
    """Complete backups under ``destination``, oldest first."""
    if not destination.is_dir():
        return []
    return sorted(
        path
        for path in destination.iterdir()
        if path.name.startswith(PREFIX) and (path / MANIFEST).is_file()
    )


def read_manifest(backup: Path) -> BackupManifest:
    """The backup's manifest as written, without reading its files (see verify_backup).

    Raises:
        BackupError: there is no manifest: not a complete backup.
    """
    manifest_file = backup / MANIFEST
    if not manifest_file.is_file():
        raise BackupError(f"{backup}: no {MANIFEST}; this is not a complete aiorch backup")
    return BackupManifest.model_validate_json(manifest_file.read_text())


def verify_backup(backup: Path) -> BackupManifest:
    """The backup's manifest, once every file matches its checksum.

    Raises:
        BackupError: the manifest is missing, or a file is missing or altered.
    """
    manifest = read_manifest(backup)
    for item in manifest.items:
        path = backup / item.file
        if not path.is_file() or _sha256(path) != item.sha256:
            raise BackupError(
                f"{backup}: {item.file} is missing or does not match its checksum; "
                "restore another backup"
            )
    return manifest


def restore_backup(backup: Path, sources: Sequence[BackupSource]) -> BackupManifest:
    """Put ``backup`` back into ``sources`` (matched by name); its manifest.

    Stop the Prefect server and workers first: a database restored under a running
    server would be overwritten or half-read. Every file is checked before anything
    is changed.

    Raises:
        BackupError: the backup is damaged, or a source has no item in it.
    """
    manifest = verify_backup(backup)
    items = {item.name: item for item in manifest.items}
    missing = [source.name for source in sources if source.name not in items]
    if missing:
        raise BackupError(f"{backup}: holds nothing for {missing}; it has {sorted(items)}")
    for source in sources:
        item = items[source.name]
        if item.kind != source.kind:
            raise BackupError(
                f"{source.name}: the backup holds a {item.kind} snapshot, the target is "
                f"{source.kind}; restore into a {item.kind} target"
            )
        _restore(source, backup / item.file)
    return manifest


def _snapshot(source: BackupSource, into: Path) -> BackupItem:
    target = into / f"{source.name}{_SUFFIX[source.kind]}"
    present = True
    if source.kind == "sqlite":
        present = source.sqlite_path().is_file()
        _sqlite_copy(source.sqlite_path(), target)
    elif source.kind == "postgres":
        _pg_tool("pg_dump", source, ["--format=custom", f"--file={target}"])
    else:
        assert source.directory is not None
        present = source.directory.is_dir()
        with tarfile.open(target, "w") as archive:
            if present:
                archive.add(source.directory, arcname=".")
    return BackupItem(
        name=source.name,
        kind=source.kind,
        file=target.name,
        sha256=_sha256(target),
        size=target.stat().st_size,
        present=present,
    )


def _restore(source: BackupSource, file: Path) -> None:
    if source.kind == "sqlite":
        path = source.sqlite_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = path.with_name(f"{path.name}{PARTIAL}")
        _sqlite_copy(file, staged)
        for stale in (path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")):
            stale.unlink(missing_ok=True)
        os.replace(staged, path)
    elif source.kind == "postgres":
        _pg_tool("pg_restore", source, ["--clean", "--if-exists", "--no-owner", str(file)])
    else:
        assert source.directory is not None
        source.directory.mkdir(parents=True, exist_ok=True)
        with tarfile.open(file) as archive:
            archive.extractall(source.directory, filter="data")


def _sqlite_copy(source: Path, target: Path) -> None:
    if not source.is_file():
        # An aiorch store that was never used: an empty database restores the same.
        sqlite3.connect(target).close()
        return
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as reading:
        writing = sqlite3.connect(target)
        try:
            reading.backup(writing)
        finally:
            writing.close()
    reading.close()


def _pg_tool(tool: str, source: BackupSource, arguments: list[str]) -> None:
    assert source.database_url is not None
    url = make_url(source.database_url.get_secret_value())
    binary = postgres_program(tool)
    if binary is None:
        raise BackupError(
            f"{source.name}: {tool} is not installed (apt-get install postgresql-client)"
        )
    connection = [
        f"--host={url.host or '127.0.0.1'}",
        f"--port={url.port or 5432}",
        f"--username={url.username or 'postgres'}",
        f"--dbname={url.database or 'postgres'}",
    ]
    environment = {"PATH": os.environ.get("PATH", ""), "PGPASSWORD": url.password or ""}
    done = subprocess.run(
        [str(binary), *connection, *arguments],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BackupError(f"{source.name}: {tool} failed: {done.stderr.strip()[-500:]}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
