"""A flow that backs up this machine's Prefect database, aiorch's stores and results.

Deployed on a schedule from ``prefect.yaml`` (daily, on the process pool of the machine
that holds the databases); each run leaves a backup in ``AIORCH_BACKUP_DIR`` (or
``destination``), removes those beyond ``keep``, and emits ``aiorch.backup.completed``,
whose time the metrics exporter reports as ``aiorch_last_backup_timestamp_seconds``.

Example:
    ```python
    from aiorch.flows.backup import backup

    print(backup.name)  # aiorch-backup
    ```
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from aiorch.backup.archive import create_backup, read_manifest
from aiorch.backup.sources import default_sources
from aiorch.core.events import BACKUP_COMPLETED_EVENT
from aiorch.core.settings import load_settings


@task(name="take-backup", cache_policy=NO_CACHE, persist_result=False)
def take_backup(destination: Path, keep: int) -> str:
    """Snapshot every source; the backup's directory."""
    return str(create_backup(default_sources(), destination, keep=keep))


@flow(name="aiorch-backup")
def backup(destination: str | None = None, keep: int = 7) -> str:
    """Take a backup and announce it; the backup's directory.

    Args:
        destination: Directory of backups; ``AIORCH_BACKUP_DIR`` when empty.
        keep: Complete backups to keep; older ones are removed.
    """
    where = Path(destination) if destination else load_settings().backup_dir
    path = take_backup(where.expanduser(), keep)
    manifest = read_manifest(Path(path))  # checksummed as it was written
    emit_event(
        event=BACKUP_COMPLETED_EVENT,
        resource={"prefect.resource.id": f"aiorch.backup.{Path(path).name}"},
        payload={
            "backup": path,
            "created_at": manifest.created_at.isoformat(),
            "seconds": manifest.seconds,
            "bytes": sum(item.size for item in manifest.items),
        },
    )
    return path
