"""The supervisor of the machine's shared local model server (see ``local_model``).

    python -m aiorch.tasks.agents.local_model_process STATE_DIR IDLE_SECONDS -- COMMAND...

Runs COMMAND (llama.cpp's server) under :func:`aiorch.core.supervisor.supervise`. Every
process using the server holds a lease: a file in ``STATE_DIR/leases`` named after its
pid. Once no lease holder has been alive for IDLE_SECONDS (they exited, or were killed),
or on SIGTERM, the supervisor stops the server, removes its state file and exits.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from pydantic import ValidationError

from aiorch.core.models import AiorchModel
from aiorch.core.services import process_alive
from aiorch.core.supervisor import supervise

CHECK_SECONDS = 1.0
STATE_FILE = "server.json"


class ModelServerState(AiorchModel):
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
        if lease.name.isdigit() and process_alive(int(lease.name)):
            alive.append(int(lease.name))
        else:
            lease.unlink(missing_ok=True)
    return alive


def main(argv: list[str]) -> int:
    """Serve while a lease holder lives."""
    state_dir, idle_seconds = Path(argv[0]), float(argv[1])
    command = argv[argv.index("--") + 1 :]
    leases = state_dir / "leases"
    last_used = time.monotonic()

    def idle() -> bool:
        nonlocal last_used
        if live_leases(leases):
            last_used = time.monotonic()
        return time.monotonic() - last_used > idle_seconds

    supervise(command, idle, CHECK_SECONDS)
    recorded = ModelServerState.read(state_dir)
    if recorded is not None and recorded.supervisor_pid == os.getpid():
        (state_dir / STATE_FILE).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
