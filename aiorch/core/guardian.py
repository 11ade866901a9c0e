"""Nothing aiorch starts outlives the process that started it, even after ``kill -9``.

An ``atexit`` handler or a ``finally`` does not run when a process is killed, so each
process that starts helpers (a step's commands and containers, the local model server's
supervisor, Prefect's temporary server) also starts one guardian: a small process
(:mod:`aiorch.core.guardian_process`) that reads a pipe only its owner can write. When
the owner dies, however it dies, the kernel closes the pipe; the guardian removes the
Docker containers the owner had registered, kills every process it had registered and
still ran, removes the temporary directories it had registered, and exits. What was
registered is gone a few seconds after its owner at most.

The guardian belongs to its process: a forked child starts its own (it closes the pipe
it inherited, so its parent's guardian still sees its parent die).

Example:
    ```python
    import subprocess

    from aiorch.core.guardian import Guardian

    guardian = Guardian.of_process()
    process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    with guardian.watching(process.pid):  # killed with this process, even by kill -9
        process.terminate()
        process.wait()
    ```
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, ClassVar

PROGRAM = Path(__file__).with_name("guardian_process.py")


class Guardian:
    """This process's guardian: started on first use, it ends when the process ends."""

    _of_process: ClassVar[Guardian | None] = None
    _class_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._pipe: IO[bytes] | None = None
        # Kept here too, so a guardian started after the first was killed knows them all.
        self._watched: dict[int, bool] = {}
        self._swept: set[str] = set()
        self._containers: dict[str, str] = {}

    @classmethod
    def of_process(cls) -> Guardian:
        """The calling process's guardian (started by the first registration)."""
        with cls._class_lock:
            if cls._of_process is None:
                cls._of_process = cls()
            return cls._of_process

    @classmethod
    def _forget_after_fork(cls) -> None:
        inherited = cls._of_process
        cls._of_process = None
        cls._class_lock = threading.Lock()
        if inherited is not None and inherited._pipe is not None:
            # Keeping the parent's write end open would hide the parent's death.
            with contextlib.suppress(OSError):
                inherited._pipe.close()

    @property
    def pid(self) -> int:
        """The guardian's process id, starting it if needed."""
        with self._lock:
            return self._started().pid

    def _started(self) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self._process = subprocess.Popen(
            [sys.executable, "-I", "-S", str(PROGRAM)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._pipe = self._process.stdin
        # A guardian killed on its own is replaced by one that knows everything it knew.
        replay: list[dict[str, object]] = [
            {"watch": pid, "group": group} for pid, group in self._watched.items()
        ]
        replay += [{"sweep": path} for path in self._swept]
        replay += [
            {"container": container, "socket": socket_path}
            for container, socket_path in self._containers.items()
        ]
        self._write(replay)
        return self._process

    def _write(self, messages: list[dict[str, object]]) -> None:
        assert self._pipe is not None
        self._pipe.write(b"".join(json.dumps(message).encode() + b"\n" for message in messages))
        self._pipe.flush()

    def _deliver(self, message: dict[str, object]) -> None:
        """Send one message (the lock is held); messages are idempotent."""
        self._started()
        try:
            self._write([message])
        except BrokenPipeError:
            self._process = None
            self._started()

    def watch(self, pid: int, *, group: bool = True) -> None:
        """Kill ``pid``'s process group (``group=False``: the process alone) if we die."""
        with self._lock:
            if self._watched.get(pid) is group:
                return
            self._watched[pid] = group
            self._deliver({"watch": pid, "group": group})

    def forget(self, pid: int) -> None:
        """``pid`` ended or was stopped normally: nothing to do for it any more."""
        with self._lock:
            self._watched.pop(pid, None)
            self._deliver({"forget": pid})

    def watch_container(self, container: str, socket_path: str) -> None:
        """Remove the Docker container (through the engine's unix socket) if we die."""
        with self._lock:
            self._containers[container] = socket_path
            self._deliver({"container": container, "socket": socket_path})

    def forget_container(self, container: str) -> None:
        """The container was removed normally."""
        with self._lock:
            if self._containers.pop(container, None) is not None:
                self._deliver({"removed": container})

    @contextlib.contextmanager
    def watching(self, pid: int, *, group: bool = True) -> Iterator[None]:
        """Watch ``pid`` for the duration of the block."""
        self.watch(pid, group=group)
        try:
            yield
        finally:
            self.forget(pid)

    @contextlib.contextmanager
    def sweeping(self, path: Path) -> Iterator[Path]:
        """Remove the directory ``path`` if we die before the block ends."""
        with self._lock:
            self._swept.add(str(path))
            self._deliver({"sweep": str(path)})
        try:
            yield path
        finally:
            with self._lock:
                self._swept.discard(str(path))
                self._deliver({"keep": str(path)})


@contextlib.contextmanager
def swept_temporary_directory(prefix: str) -> Iterator[Path]:
    """A temporary directory removed at the end, and by the guardian if we die first."""
    with (
        tempfile.TemporaryDirectory(prefix=prefix) as name,
        Guardian.of_process().sweeping(Path(name)) as path,
    ):
        yield path


os.register_at_fork(after_in_child=Guardian._forget_after_fork)
