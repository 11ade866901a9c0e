"""One local Prefect server per PREFECT_HOME, shared by every aiorch command on purpose.

With no ``PREFECT_API_URL``, Prefect starts a temporary server inside each process that
runs a flow: about 17 s of a short run here, a server that dies with the process (and
leaves no UI to look at the run in), and two processes started at once on one
PREFECT_HOME race each other's database migrations and Prefect's 20 s start-up limit.

aiorch's own entry points (``scripts/demo``, ``aiorch run``, ``aiorch server start``)
use this instead: the first one starts ``prefect server start`` (API and UI) for the
PREFECT_HOME, under a file lock so that processes started together start one server;
the others find it through a state file in PREFECT_HOME and use it. The server is meant
to outlive the command that started it, so its link keeps working, and it stops itself
after ``AIORCH_LOCAL_SERVER_IDLE_SECONDS`` (default 600) without flow-run activity, or
on ``aiorch server stop``. Its supervisor (:mod:`aiorch.core.local_server_process`)
owns it: if the supervisor is killed, its guardian stops the server too.

Flows started with plain ``python my_flow.py`` and no API URL still get Prefect's own
temporary server (aiorch's guardian stops it if that process is killed).

Example:
    ```python
    from pathlib import Path

    from aiorch.core.local_server import LocalServer

    server = LocalServer(Path.home() / ".prefect")
    print(server.running())  # None, or where the shared server answers
    ```
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_UI_URL,
    get_current_settings,
    temporary_settings,
)
from pydantic import ValidationError

from aiorch.core.errors import ServiceUnavailable
from aiorch.core.models import AiorchModel
from aiorch.core.services import answers, free_port, log_tail
from aiorch.core.settings import load_settings
from aiorch.core.ui import v2_base

STATE_FILE = "aiorch-local-server.json"
LOCK_FILE = "aiorch-local-server.lock"
LOG_FILE = "aiorch-local-server.log"
POLL_SECONDS = 0.2


class LocalServerState(AiorchModel):
    """Where the shared server of a PREFECT_HOME answers, and who supervises it."""

    supervisor_pid: int
    api_url: str
    ui_url: str


def _healthy(api_url: str) -> bool:
    return answers(f"{api_url}/health")


def state_file(home: Path) -> Path:
    """Where the running shared server of ``home`` is recorded (removed when it stops)."""
    return home / STATE_FILE


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class LocalServer:
    """The shared local Prefect server of one PREFECT_HOME.

    Args:
        home: The PREFECT_HOME whose database the server serves.
        host: Interface the API and UI listen on.
        port: Preferred port; a free one is picked when it is taken.
        idle_seconds: The server stops after this long without flow-run activity.
    """

    def __init__(
        self, home: Path, host: str = "127.0.0.1", port: int = 4200, idle_seconds: float = 600
    ) -> None:
        self.home = home
        self.host = host
        self.port = port
        self.idle_seconds = idle_seconds

    @classmethod
    def configured(cls) -> LocalServer:
        """The server of the current PREFECT_HOME, on the host, port and idle time set."""
        settings = load_settings()
        return cls(
            get_current_settings().home,
            settings.ui_host,
            settings.ui_port,
            settings.local_server_idle_seconds,
        )

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.home.mkdir(parents=True, exist_ok=True)
        with (self.home / LOCK_FILE).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def running(self) -> LocalServerState | None:
        """The running shared server, if one answers."""
        try:
            state = LocalServerState.model_validate_json(state_file(self.home).read_text())
        except (OSError, ValidationError):
            return None
        return state if _healthy(state.api_url) else None

    def ensure(self, startup_seconds: float = 180.0) -> LocalServerState:
        """The running shared server, started if none answers.

        Raises:
            ServiceUnavailable: the server did not answer within ``startup_seconds``.
        """
        with self._locked():
            state = self.running()
            if state is not None:
                return state
            port = self.port if _port_free(self.host, self.port) else free_port()
            log = self.home / LOG_FILE
            with log.open("ab") as output:
                supervisor = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "aiorch.core.local_server_process",
                        str(self.home),
                        self.host,
                        str(port),
                        str(self.idle_seconds),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    # Shared on purpose: it outlives this process, in a session of its own.
                    start_new_session=True,
                )
            base = f"http://{self.host}:{port}"
            state = LocalServerState(
                supervisor_pid=supervisor.pid, api_url=f"{base}/api", ui_url=base
            )
            deadline = time.monotonic() + startup_seconds
            while not _healthy(state.api_url):
                if supervisor.poll() is not None or time.monotonic() > deadline:
                    supervisor.kill()
                    raise ServiceUnavailable(
                        f"the local Prefect server did not start (log: {log}):\n{log_tail(log)}"
                    )
                time.sleep(POLL_SECONDS)
            state_file(self.home).write_text(state.model_dump_json())
            return state

    def stop(self) -> bool:
        """Stop the shared server; False if none was running."""
        with self._locked():
            try:
                state = LocalServerState.model_validate_json(state_file(self.home).read_text())
            except (OSError, ValidationError):
                return False
            state_file(self.home).unlink(missing_ok=True)
            try:
                os.kill(state.supervisor_pid, signal.SIGTERM)
            except ProcessLookupError:
                return False
            return True


@contextmanager
def on_local_server(server: LocalServer) -> Iterator[LocalServerState | None]:
    """Point Prefect at ``server`` for the block, unless an API URL is configured already.

    Yields the shared server used, or None when the configured API is used.
    """
    if get_current_settings().api.url:
        yield None
        return
    state = server.ensure()
    # The V2 root as UI URL makes Prefect's own "View at" log lines open the V2 UI too.
    ui_url = v2_base(state.ui_url)
    with temporary_settings(updates={PREFECT_API_URL: state.api_url, PREFECT_UI_URL: ui_url}):
        yield state
