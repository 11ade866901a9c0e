"""Start, health-check and stop helper processes (model servers), with deadlines.

Each service runs in its own process group, so stopping it also stops whatever it
started, and a service that dies during start-up fails with the end of its log.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from aiorch.core.errors import ServiceUnavailable
from aiorch.core.guardian import Guardian

STOP_DEADLINE_SECONDS = 20.0
POLL_INTERVAL_SECONDS = 0.2


def postgres_program(name: str) -> Path | None:
    """A PostgreSQL program (initdb, pg_dump, ...): on PATH, else Debian's newest version.

    Debian keeps the server's programs in ``/usr/lib/postgresql/<version>/bin``, off
    PATH; the newest one also reads what older servers wrote.
    """
    found = shutil.which(name)
    if found:
        return Path(found)
    candidates = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0,
        reverse=True,
    )
    return candidates[0] if candidates else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a killed process nobody has reaped yet does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def answers(url: str) -> bool:
    """Whether ``url`` answers 200 right now (a health check)."""
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def log_tail(log: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a service's log."""
    if not log.exists():
        return "(no log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def wait_until_ready(
    url: str, process: subprocess.Popen[bytes], log: Path, deadline_seconds: float
) -> None:
    """Poll ``url`` until it answers 200; fail with the service's log if it never does.

    Raises:
        ServiceUnavailable: the process exited, or ``url`` did not answer in time.
    """
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceUnavailable(
                f"{process.args!r} exited with {process.returncode}:\n{log_tail(log)}"
            )
        if answers(url):
            return
        time.sleep(POLL_INTERVAL_SECONDS)
    raise ServiceUnavailable(f"{url} not ready after {deadline_seconds}s:\n{log_tail(log)}")


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a service and everything it started (it runs in its own process group)."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_DEADLINE_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_DEADLINE_SECONDS)


@contextmanager
def running_service(
    argv: list[str],
    env: Mapping[str, str],
    log: Path,
    health_url: str,
    deadline_seconds: float,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` in a session of its own, output to ``log``, until the block ends.

    Yields once ``health_url`` answers 200; stops the service and everything it started
    afterwards. A guardian kills it if this process dies first, even by ``kill -9``.

    Raises:
        ServiceUnavailable: it exited, or did not answer within ``deadline_seconds``.
    """
    with log.open("wb") as output:
        process = subprocess.Popen(
            argv,
            env=dict(env),
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        with Guardian.of_process().watching(process.pid):
            wait_until_ready(health_url, process, log, deadline_seconds)
            yield process
    finally:
        stop_process_group(process)
