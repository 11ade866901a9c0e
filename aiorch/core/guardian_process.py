"""The guardian program: when its owner dies, it kills what the owner started and exits.

Run by :class:`aiorch.core.guardian.Guardian` as ``python -I -S guardian_process.py``
(the standard library only, so it starts in a few tens of milliseconds). It reads one
JSON object per line from stdin, a pipe whose write end only the owner holds:

- ``{"watch": PID, "group": true}``: kill the process group PID when the owner dies
  (``"group": false``: the process PID alone, for a child in the owner's own group);
- ``{"forget": PID}``: it ended normally;
- ``{"sweep": PATH}`` / ``{"keep": PATH}``: remove the directory PATH when the owner
  dies / it was cleaned up normally;
- ``{"container": ID, "socket": PATH}`` / ``{"removed": ID}``: remove the Docker
  container ID (forced, through the engine's unix socket PATH) when the owner dies / it
  was removed normally.

End of input means the owner is gone, however it went (``kill -9`` included: the kernel
closes its pipes). The guardian then kills every process still watched, waits (a few
seconds at most) until they are gone, removes every path still swept, and exits: a
guardian that has exited means its owner's work is dead, which is what a lock's next
holder checks before taking the lock over. It ignores SIGINT, so a Ctrl-C meant for the owner's
terminal does not take it first.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import sys
import time

EXIT_DEADLINE_SECONDS = 5.0
DOCKER_TIMEOUT_SECONDS = 10.0
POLL_SECONDS = 0.05


def _signal(pid: int, group: bool, signum: int) -> bool:
    """Send ``signum``; False when no such process (or group) is left."""
    try:
        if group:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_all(watched: dict[int, bool]) -> None:
    for pid, group in watched.items():
        _signal(pid, group, signal.SIGKILL)
    deadline = time.monotonic() + EXIT_DEADLINE_SECONDS
    left = dict(watched)
    while left and time.monotonic() < deadline:
        left = {pid: group for pid, group in left.items() if _signal(pid, group, 0)}
        if left:
            time.sleep(POLL_SECONDS)


class _UnixConnection(http.client.HTTPConnection):
    """HTTP to the Docker engine over its unix socket."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=DOCKER_TIMEOUT_SECONDS)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(DOCKER_TIMEOUT_SECONDS)
        self.sock.connect(self._path)


def _remove_container(socket_path: str, container: str) -> None:
    connection = _UnixConnection(socket_path)
    try:
        connection.request("DELETE", f"/containers/{container}?force=true&v=true")
        connection.getresponse().read()
    except OSError:
        pass
    finally:
        connection.close()


def main() -> None:
    """Serve one owner until its pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watched: dict[int, bool] = {}
    swept: set[str] = set()
    containers: dict[str, str] = {}
    for line in sys.stdin.buffer:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if "watch" in message:
            watched[int(message["watch"])] = bool(message.get("group", True))
        elif "forget" in message:
            watched.pop(int(message["forget"]), None)
        elif "sweep" in message:
            swept.add(str(message["sweep"]))
        elif "keep" in message:
            swept.discard(str(message["keep"]))
        elif "container" in message:
            containers[str(message["container"])] = str(message["socket"])
        elif "removed" in message:
            containers.pop(str(message["removed"]), None)
    for container, socket_path in containers.items():
        _remove_container(socket_path, container)
    _kill_all(watched)
    for path in swept:
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
