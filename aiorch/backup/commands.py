"""``aiorch backup create | list | restore``: this machine's backups from the command line.

Examples:
    ```bash
    aiorch backup create --keep 14          # into AIORCH_BACKUP_DIR
    aiorch backup list
    aiorch backup restore ~/aiorch-backups/aiorch-backup-20261207T030000000000Z --yes
    ```
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _destination(arguments: argparse.Namespace) -> Path:
    from aiorch.core.settings import load_settings

    chosen: Path = arguments.to or load_settings().backup_dir
    return chosen.expanduser()


def _backup(arguments: argparse.Namespace) -> int:
    from aiorch.backup.archive import (
        create_backup,
        list_backups,
        read_manifest,
        restore_backup,
        verify_backup,
    )
    from aiorch.backup.sources import default_sources

    if arguments.action == "create":
        backup = create_backup(default_sources(), _destination(arguments), keep=arguments.keep)
        # Its checksums were computed a moment ago; reading every file again for a
        # summary would double the I/O of a large backup.
        manifest = read_manifest(backup)
        print(backup)
        print(
            f"backed up {', '.join(item.name for item in manifest.items)} in "
            f"{manifest.seconds:.1f} s",
            file=sys.stderr,
        )
        for item in manifest.items:
            if not item.present:
                # Expected for a store never used; for the Prefect database, check the settings.
                print(f"note: {item.name} did not exist; an empty one was saved", file=sys.stderr)
        return 0
    if arguments.action == "list":
        backups = list_backups(_destination(arguments))
        if not backups:
            print(f"no backups in {_destination(arguments)}: `aiorch backup create`")
        for backup in backups:
            manifest = verify_backup(backup)
            size = sum(item.size for item in manifest.items)
            print(f"{backup}  {manifest.created_at:%Y-%m-%d %H:%M:%S} UTC  {size} bytes")
        return 0
    if not arguments.yes:
        print(
            "restoring replaces the Prefect database, aiorch's stores and the stored "
            "results with the backup's; stop the server and workers, then add --yes",
            file=sys.stderr,
        )
        return 2
    manifest = restore_backup(arguments.backup, default_sources())
    print(f"restored the backup of {manifest.created_at:%Y-%m-%d %H:%M:%S} UTC")
    return 0


def add_commands(commands: Any) -> None:
    """Add ``backup`` to the ``aiorch`` command's subcommands."""
    backup = commands.add_parser("backup", help="back up and restore Prefect and aiorch state")
    actions = backup.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="take a backup now")
    create.add_argument("--to", type=Path, help="directory of backups (AIORCH_BACKUP_DIR)")
    create.add_argument("--keep", type=int, default=7, help="complete backups to keep")
    listing = actions.add_parser("list", help="the complete backups, oldest first")
    listing.add_argument("--to", type=Path, help="directory of backups (AIORCH_BACKUP_DIR)")
    restore = actions.add_parser("restore", help="put a backup back (server stopped)")
    restore.add_argument("backup", type=Path, help="the backup's directory")
    restore.add_argument("--yes", action="store_true", help="replace the current state")
    backup.set_defaults(handler=_backup)
