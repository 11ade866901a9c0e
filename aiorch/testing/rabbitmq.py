"""A private RabbitMQ node for tests, started from Debian's ``rabbitmq-server`` on loopback.

The node gets its own ports, its own Erlang cookie and its own port mapper (``epmd``,
started in the foreground here so that it dies with the node instead of lingering as a
daemon), all in one temp directory. Under root, Debian's node refuses to write as root,
so it runs as the ``rabbitmq`` user the package creates, and the directory is theirs.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiorch.core.errors import ConfigurationError, ServiceUnavailable
from aiorch.core.guardian import Guardian
from aiorch.core.services import free_port, log_tail, stop_process_group

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
STARTUP_DEADLINE_SECONDS = 90.0


def rabbitmq_installed() -> bool:
    """Whether Debian's RabbitMQ server and Erlang's port mapper are installed."""
    return (RABBITMQ_BIN / "rabbitmq-server").exists() and shutil.which("epmd") is not None


class RabbitNode:
    """A running private node: its AMQP URL, and control over it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.amqp_port = free_port()
        self.epmd_port = free_port()
        self.dist_port = free_port()
        self.name = f"aiorch-{self.amqp_port}@localhost"
        self._server: subprocess.Popen[bytes] | None = None
        self._epmd: subprocess.Popen[bytes] | None = None
        self._owner = "rabbitmq" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        """The AMQP URL of the node (guest may log in from loopback)."""
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    def _environment(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.directory),
            "LANG": "C.UTF-8",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.directory / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.directory / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.directory / "enabled_plugins"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.directory / "advanced.config"),
        }

    def _spawn(self, command: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as output:
            return subprocess.Popen(
                command,
                env=self._environment(),
                cwd=self.directory,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=self._owner,
                group=self._owner,
            )

    def start(self) -> None:
        """Start the port mapper and the node; return once AMQP accepts connections."""
        (self.directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            "loopback_users.guest = true\n"
            # A test node on a loaded machine: no disk alarm that blocks publishers.
            "disk_free_limit.absolute = 1MB\n"
        )
        (self.directory / "enabled_plugins").write_text("[].\n")
        (self.directory / "advanced.config").write_text("[].\n")
        for name in ("mnesia", "log"):
            (self.directory / name).mkdir()
        if self._owner is not None:
            owner = pwd.getpwnam(self._owner)
            for path in (self.directory, *self.directory.rglob("*")):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        guardian = Guardian.of_process()
        self._epmd = self._spawn(
            ["epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"],
            self.directory / "epmd.log",
        )
        guardian.watch(self._epmd.pid)
        self._server = self._spawn(
            [str(RABBITMQ_BIN / "rabbitmq-server")], self.directory / "server.log"
        )
        guardian.watch(self._server.pid)
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self._server is not None
        deadline = time.monotonic() + STARTUP_DEADLINE_SECONDS
        while True:
            if self._server.poll() is not None:
                raise ServiceUnavailable(
                    f"rabbitmq-server exited with {self._server.returncode}:\n"
                    f"{log_tail(self.directory / 'server.log')}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.amqp_port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"rabbitmq not ready:\n{log_tail(self.directory / 'server.log')}"
                    ) from None
                time.sleep(0.2)

    def stop(self) -> None:
        """Stop the node (and its port mapper)."""
        guardian = Guardian.of_process()
        for process in (self._server, self._epmd):
            if process is not None:
                stop_process_group(process)
                guardian.forget(process.pid)
        self._server = self._epmd = None

    def restart(self) -> None:
        """Stop the node and start it again on the same ports and data (durable queues stay)."""
        assert self._server is not None
        guardian = Guardian.of_process()
        stop_process_group(self._server)
        guardian.forget(self._server.pid)
        self._server = self._spawn(
            [str(RABBITMQ_BIN / "rabbitmq-server")], self.directory / "server.log"
        )
        guardian.watch(self._server.pid)
        self._wait_ready()


@contextmanager
def running_rabbitmq() -> Iterator[RabbitNode]:
    """Start a private node in a new temp directory; stop it and remove the directory after.

    Raises:
        ConfigurationError: RabbitMQ is not installed.
    """
    if not rabbitmq_installed():
        raise ConfigurationError("RabbitMQ is not installed (apt-get install rabbitmq-server)")
    # Directly under the system temp dir: the node's user must be able to reach it.
    node = RabbitNode(Path(tempfile.mkdtemp(prefix="aiorch-rabbitmq-")))
    try:
        node.start()
        yield node
    finally:
        node.stop()
        shutil.rmtree(node.directory, ignore_errors=True)
