"""A real PostgreSQL server for tests, started from Debian's binaries in a temp directory.

PostgreSQL refuses to run as root, so under root the server runs as the ``postgres``
user the Debian package creates.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from aiorch.core.errors import ConfigurationError, ServiceUnavailable
from aiorch.core.guardian import Guardian
from aiorch.core.services import free_port, log_tail, postgres_program, stop_process_group

STARTUP_DEADLINE_SECONDS = 60.0


def postgres_bin() -> Path | None:
    """The directory holding initdb and postgres, if PostgreSQL is installed."""
    initdb = postgres_program("initdb")
    return initdb.resolve().parent if initdb else None


def _as_owner(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextmanager
def running_postgres() -> Iterator[str]:
    """Initialise and start a server in a new temp directory; yield a SQLAlchemy URL.

    The directory is created directly under the system temp dir, since the server's
    user must be able to reach it; it is removed afterwards.
    """
    binaries = postgres_bin()
    if binaries is None:
        raise ConfigurationError("PostgreSQL is not installed (apt-get install postgresql)")
    directory = Path(tempfile.mkdtemp(prefix="aiorch-postgres-"))
    data = directory / "data"
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(directory, owner.pw_uid, owner.pw_gid)
        directory.chmod(0o700)
    subprocess.run(
        _as_owner([str(binaries / "initdb"), "-D", str(data), "-U", "aiorch", "-A", "trust"]),
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_port()
    log = directory / "postgres.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            _as_owner(
                [
                    str(binaries / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(port),
                    "-h",
                    "127.0.0.1",
                    "-k",
                    str(directory),
                ]
            ),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"postgresql+psycopg://aiorch@127.0.0.1:{port}/postgres"
    try:
        # The guardian stops the server if this process is killed before the block ends.
        with Guardian.of_process().watching(process.pid):
            _wait_for(url, process, log)
            yield url
    finally:
        stop_process_group(process)
        shutil.rmtree(directory, ignore_errors=True)


def _wait_for(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    engine = create_engine(url)
    deadline = time.monotonic() + STARTUP_DEADLINE_SECONDS
    try:
        while True:
            if process.poll() is not None:
                raise ServiceUnavailable(
                    f"postgres exited with {process.returncode}:\n{log_tail(log)}"
                )
            try:
                with engine.connect() as connection:
                    connection.execute(text("select 1"))
                return
            except OperationalError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"postgres not ready:\n{log_tail(log)}") from None
                time.sleep(0.2)
    finally:
        engine.dispose()
