"""The supervisor of the machine's shared local model server (see ``local_model``).

    python -m aiorch.tasks.agents.local_model_process STATE_DIR IDLE_SECONDS -- COMMAND...

Runs COMMAND (llama.cpp's server) in a process group of its own, watched by this
process's guardian (a ``kill -9`` of the supervisor stops it too). Every process using
the server holds a lease: a file in ``STATE_DIR/leases`` named after its pid. Once no
lease holder has been alive for IDLE_SECONDS (they exited, or were killed), or on
SIGTERM, the supervisor stops the server, removes its state file and exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from pydantic import BaseModel, ValidationError

from aiorch.core.guardian import Guardian
from aiorch.core.services import stop_process_group

CHECK_SECONDS = 1.0
STATE_FILE = "server.json"


class ModelServerState(BaseModel):
    """Where the machine's shared model server answers, and who supervises it."""

    supervisor_pid: int
    base_url: str

    @classmethod
    def read(cls, state_dir: Path) -> ModelServerState | None:
        """The recorded server of ``state_dir``, if any (it may have stopped since)."""
        try:
            return cls.model_validate_json((state_dir / STATE_FILE).read_text())
        except (OSError, ValidationError):
            return None


def live_leases(leases: Path) -> list[int]:
    """Pids of the processes holding a lease; leases of dead processes are removed."""
    alive = []
    for lease in leases.glob("*"):
        try:
            pid = int(lease.name)
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            lease.unlink(missing_ok=True)
            continue
        except PermissionError:
            pass
        alive.append(pid)
    return alive


def main(argv: list[str]) -> int:
    """Serve while a lease holder lives."""
    state_dir, idle_seconds = Path(argv[0]), float(argv[1])
    command = argv[argv.index("--") + 1 :]
    leases = state_dir / "leases"
    server = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
    Guardian.of_process().watch(server.pid)
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    last_used = time.monotonic()
    while not stopping and server.poll() is None:
        time.sleep(CHECK_SECONDS)
        if live_leases(leases):
            last_used = time.monotonic()
        elif time.monotonic() - last_used > idle_seconds:
            print(f"aiorch: no process used the model for {idle_seconds:g} s; stopping", flush=True)
            break
    stop_process_group(server)
    recorded = ModelServerState.read(state_dir)
    if recorded is not None and recorded.supervisor_pid == os.getpid():
        (state_dir / STATE_FILE).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
