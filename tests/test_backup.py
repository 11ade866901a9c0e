"""Backups: the disaster-recovery drill on real Prefect servers, SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio
import pytest
from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_LOCAL_STORAGE_PATH,
    temporary_settings,
)
from prefect.variables import Variable
from sqlalchemy import create_engine, text

from aiorch.backup.archive import (
    BackupError,
    create_backup,
    list_backups,
    restore_backup,
    verify_backup,
)
from aiorch.backup.sources import BackupSource
from aiorch.core.services import free_port
from aiorch.deploy.automations import ensure_automation
from aiorch.deploy.crash_detection import crash_detection_automation
from aiorch.tasks.container import ContainerStep, StepResult, run_step
from aiorch.testing.prefect_server import running_server

STEP = ContainerStep(
    name="drill-step",
    image="busybox",
    commands=[["sh", "-c", "mkdir -p out && date +%s%N > out/stamp"]],
    outputs=["out"],
)


@flow(name="drill")
def drill(export_to: str) -> StepResult:
    create_markdown_artifact("# before the disaster", key="drill-report")
    result: StepResult = run_step(STEP, "local", export_to=Path(export_to))
    return result


@contextmanager
def _server(home: Path, storage: Path, database_url: str | None) -> Iterator[str]:
    env = {"PREFECT_SERVER_DATABASE_CONNECTION_URL": database_url} if database_url else {}
    # Prefect keeps one events worker per process, whatever the server: the one an
    # earlier test started still talks to the session's server, so it goes first.
    APILogWorker.drain_all()
    EventsWorker.drain_all()
    with (
        running_server(home, free_port(), env=env) as api_url,
        temporary_settings(updates={PREFECT_API_URL: api_url, PREFECT_LOCAL_STORAGE_PATH: storage}),
    ):
        yield api_url
        # Ship buffered logs and events while this server is still up.
        APILogWorker.drain_all()
        EventsWorker.drain_all()


def _load(scratch: Path) -> dict[str, Any]:
    """Runs, artifacts, blocks, deployments, variables and automations on the server."""
    first = drill(str(scratch / "first"))
    Secret(value="drill-block-value").save("drill-settings", overwrite=True)
    Variable.set("drill-variable", {"kept": True}, overwrite=True)

    async def deploy() -> UUID:
        async with get_client() as client:
            flow_id = await client.create_flow_from_name("drill")
            return await client.create_deployment(
                flow_id=flow_id, name="drill-deployment", entrypoint="tests/test_backup.py:drill"
            )

    deployment = anyio.run(deploy)
    automation = anyio.run(ensure_automation, crash_detection_automation())
    assert first.cache_hit is False
    return {"deployment": deployment, "automation": automation}


def _check(loaded: dict[str, Any], scratch: Path) -> None:
    block = Secret.load("drill-settings")
    assert isinstance(block, Secret)
    assert block.get() == "drill-block-value"
    assert Variable.get("drill-variable") == {"kept": True}
    assert Variable.get("written-after-the-backup") is None  # the recovery point

    async def read() -> tuple[Any, ...]:
        async with get_client() as client:
            runs = await client.read_flow_runs()
            artifacts = await client.read_artifacts()
            deployment = await client.read_deployment(loaded["deployment"])
            automation = await client.read_automation(loaded["automation"])
            return runs, artifacts, deployment, automation

    runs, artifacts, deployment, automation = anyio.run(read)
    assert [run.state_name for run in runs if run.name] == ["Completed"]
    assert "drill-report" in {artifact.key for artifact in artifacts}
    assert deployment.name == "drill-deployment"
    assert automation is not None
    # The same step again: served from the restored cache, not run.
    again = drill(str(scratch / "again"))
    assert again.cache_hit is True
    stamp = (scratch / "again" / "out" / "stamp").read_text()
    assert stamp == (scratch / "first" / "out" / "stamp").read_text()


def _sources(home: Path, storage: Path, breakers: Path, database_url: str | None) -> list[Any]:
    return [
        BackupSource(
            name="prefect-database",
            database_url=database_url or f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        ),
        BackupSource(name="breakers", database_url=f"sqlite:///{breakers}"),
        BackupSource(name="results", directory=storage),
    ]


def _fresh_postgres_database(url: str, name: str) -> str:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    base, _ = url.rsplit("/", 1)
    return f"{base}/{name}".replace("postgresql+psycopg", "postgresql+asyncpg")


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_disaster_recovery_drill(
    database: str, scratch_dir: Path, request: pytest.FixtureRequest
) -> None:
    postgres = request.getfixturevalue("postgres_url") if database == "postgres" else None
    before_url = _fresh_postgres_database(postgres, "drill_before") if postgres else None
    after_url = _fresh_postgres_database(postgres, "drill_after") if postgres else None
    home, storage = scratch_dir / "home", scratch_dir / "storage"
    breakers = scratch_dir / "breakers.sqlite"
    sqlite3.connect(breakers).execute("create table kept (x)").connection.commit()
    backups = scratch_dir / "backups"

    with _server(home, storage, before_url):
        loaded = _load(scratch_dir)
        taken = time.monotonic()
        backup = create_backup(_sources(home, storage, breakers, before_url), backups, keep=2)
        backup_seconds = time.monotonic() - taken
        Variable.set("written-after-the-backup", 1)

    # The disaster: the server's home (or database), the results and the stores are gone.
    for path in (home, storage, breakers):
        if path.is_dir():
            __import__("shutil").rmtree(path)
        else:
            path.unlink()
    fresh_home = scratch_dir / "fresh-home"
    recovering = time.monotonic()
    manifest = restore_backup(backup, _sources(fresh_home, storage, breakers, after_url))
    restored = time.monotonic() - recovering
    with _server(fresh_home, storage, after_url):
        serving = time.monotonic() - recovering
        _check(loaded, scratch_dir)
    assert sqlite3.connect(breakers).execute("select count(*) from kept").fetchone() == (0,)
    assert {item.name for item in manifest.items} == {"prefect-database", "breakers", "results"}
    print(
        f"\n{database}: backup {backup_seconds:.2f} s ({sum(i.size for i in manifest.items)} "
        f"bytes), restore {restored:.2f} s, serving again after {serving:.2f} s"
    )


def test_a_damaged_or_partial_backup_is_refused_and_old_ones_are_pruned(
    scratch_dir: Path,
) -> None:
    database = scratch_dir / "db.sqlite"
    sqlite3.connect(database).execute("create table t (x)").connection.commit()
    source = BackupSource(name="db", database_url=f"sqlite:///{database}")
    backups = scratch_dir / "backups"
    made = [create_backup([source], backups, keep=2) for _ in range(3)]
    assert list_backups(backups) == made[1:]  # the oldest was pruned
    assert [item.present for item in verify_backup(made[2]).items] == [True]
    never_used = BackupSource(name="unused", database_url=f"sqlite:///{scratch_dir / 'no.db'}")
    empty = verify_backup(create_backup([never_used], scratch_dir / "other", keep=1))
    assert [item.present for item in empty.items] == [False]  # saved empty, and said so
    (made[2] / "db.sqlite").write_bytes(b"tampered")
    with pytest.raises(BackupError, match=r"db\.sqlite is missing or does not match its checksum"):
        verify_backup(made[2])
    partial = backups / "aiorch-backup-20990101T000000000000Z.partial"
    partial.mkdir()
    assert partial not in list_backups(backups)
    with pytest.raises(
        BackupError, match=r"no manifest\.json; this is not a complete aiorch backup"
    ):
        restore_backup(partial, [source])
    missing = BackupSource(name="other", database_url=f"sqlite:///{database}")
    with pytest.raises(BackupError, match=r"holds nothing for \['other'\]"):
        restore_backup(made[1], [missing])


def test_sources_reject_what_cannot_be_backed_up() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="give exactly one of database_url, directory"):
        BackupSource(name="x")
    with pytest.raises(ValidationError, match="must be SQLite or PostgreSQL") as refused:
        BackupSource(name="x", database_url="mysql://u:secret-canary-7@h/db")
    assert "secret-canary-7" not in str(refused.value)  # the URL's password stays out
