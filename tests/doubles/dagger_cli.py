"""A test double for the ``dagger`` CLI and its engine: ``dagger session`` on this machine.

No Dagger engine can run where this project is tested (no registry serves it), so the
dagger runner is exercised against this stand-in. It speaks the CLI's session protocol
exactly: ``dagger session`` prints one JSON line ``{"port", "session_token"}`` on
stdout, writes log lines to stderr, serves GraphQL over HTTP at ``/query`` (basic auth,
token as user name, through ``tests.doubles.dagger_engine``) and exits when its stdin
closes. Queries are validated against
Dagger's published schema (``../shared/dagger/schema-v0.21.8.graphqls``) by graphql-core.

It implements the part of the API the runner uses: containers (from, withDirectory,
withWorkdir, withEnvVariable, withSecretVariable, withMountedCache, withExec, stdout,
stderr, exitCode, file, directory), host directories, secrets, cache volumes, exports.
Being a double, it cannot run images: ``withExec`` runs the argv as a host process in a
directory that stands for the container's file system, and an exit code other than 0
comes back as the engine's EXEC_ERROR. As in the engine, a client that disconnects
cancels its query, and the end of the session (its stdin closed, also when its client
process is killed) stops every exec still running: the exec's process group is killed.
Set ``AIORCH_DAGGER_DOUBLE_MODE`` to ``hang`` (never report a port) or ``exit`` (fail at
start) to test provisioning failures.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from graphql import GraphQLError

from tests.doubles.dagger_engine import client_gone, engine_double

SCHEMA_NAME = "schema-v0.21.8.graphqls"
CANCEL_POLL_SECONDS = 0.05
VERSION = "v0.21.8"


def schema_path() -> Path | None:
    """The published schema in ../shared/dagger beside the checkout, if present."""
    candidate = Path(__file__).resolve().parents[3] / "shared" / "dagger" / SCHEMA_NAME
    return candidate if candidate.exists() else None


@dataclass
class Engine:
    """Objects by id, and where their files live."""

    root: Path
    log: Callable[[str], None]
    objects: dict[str, Any] = field(default_factory=dict)
    counter: itertools.count[int] = field(default_factory=itertools.count)
    # Execs running now: the session's end stops them, as the engine's does.
    running: set[int] = field(default_factory=set)

    def stop_running(self) -> None:
        for group in list(self.running):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)

    def register(self, kind: str, value: Any) -> str:
        identifier = f"{kind}:{next(self.counter)}"
        self.objects[identifier] = value
        return identifier

    def scratch(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.root))


def _inside(root: Path, path: str) -> Path:
    return root / PurePosixPath(path).relative_to("/")


def _copy_tree(source: Path, target: Path) -> None:
    shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)


@dataclass(frozen=True)
class ContainerState:
    """An immutable container: its parent plus one operation, evaluated on demand."""

    engine: Engine = field(compare=False)
    parent: ContainerState | None
    op: tuple[Any, ...]
    workdir: str = "/"
    env: tuple[tuple[str, str], ...] = ()
    secret_env: tuple[tuple[str, str], ...] = ()
    mounts: tuple[tuple[str, str], ...] = ()

    def key(self) -> tuple[Any, ...]:
        """What the result depends on; like the engine, equal keys evaluate once."""
        parent = self.parent.key() if self.parent is not None else None
        return (parent, repr(self.op), self.workdir, self.env, self.secret_env, self.mounts)

    def derive(self, op: tuple[Any, ...], **changes: Any) -> ContainerState:
        values = {
            "workdir": self.workdir,
            "env": self.env,
            "secret_env": self.secret_env,
            "mounts": self.mounts,
            **changes,
        }
        return ContainerState(self.engine, self, op, **values)


class Evaluated:
    """A container's file system and last exec result, computed once per state."""

    _cache: ClassVar[dict[tuple[Any, ...], Evaluated]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, filesystem: Path, stdout: str = "", stderr: str = "", code: int = 0):
        self.filesystem, self.stdout, self.stderr, self.code = filesystem, stdout, stderr, code

    @classmethod
    def of(cls, state: ContainerState) -> Evaluated:
        with cls._lock:
            if state.key() in cls._cache:
                return cls._cache[state.key()]
        result = cls._evaluate(state)
        with cls._lock:
            cls._cache[state.key()] = result
        return result

    @classmethod
    def _evaluate(cls, state: ContainerState) -> Evaluated:
        filesystem = state.engine.scratch()
        if state.parent is not None:
            _copy_tree(cls.of(state.parent).filesystem, filesystem)
        kind = state.op[0]
        if kind == "withDirectory":
            _, path, source = state.op
            _copy_tree(source, _inside(filesystem, path))
        elif kind == "withExec":
            return cls._exec(state, filesystem, state.op[1])
        return cls(filesystem)

    @classmethod
    def _exec(cls, state: ContainerState, filesystem: Path, args: list[str]) -> Evaluated:
        workdir = _inside(filesystem, state.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        for path, volume in state.mounts:
            link = _inside(filesystem, path)
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(volume, target_is_directory=True)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **dict(state.env)}
        env.update(dict(state.secret_env))
        # Host processes cannot see container paths: point path-valued variables (a cache
        # volume's mount, say) at where the double keeps that path.
        for name, value in env.items():
            if value.startswith("/") and name != "PATH" and _inside(filesystem, value).exists():
                env[name] = str(_inside(filesystem, value))
        state.engine.log(f"exec {' '.join(args[:1])} (double: host process, image not used)")
        try:
            result = cls(filesystem, *_run_unless_cancelled(args, workdir, env, state.engine))
        except FileNotFoundError:
            result = cls(filesystem, "", f"exec: {args[0]!r}: executable file not found\n", 127)
        if result.code != 0:
            raise GraphQLError(
                f"process {json.dumps(args)} did not complete successfully: "
                f"exit code: {result.code}",
                extensions={
                    "_type": "EXEC_ERROR",
                    "cmd": args,
                    "exitCode": result.code,
                    "stdout": result.stdout,
                    "stderr": result.stderr,
                },
            )
        return result


class Container:
    def __init__(self, state: ContainerState):
        self.state = state

    def id(self, info: Any) -> str:
        return self.state.engine.register("Container", self.state)

    def from_(self, info: Any, address: str, **_: Any) -> Container:
        self.state.engine.log(f"from {address} (double: image not pulled)")
        return Container(self.state.derive(("from", address)))

    def withWorkdir(self, info: Any, path: str, **_: Any) -> Container:
        return Container(self.state.derive(("withWorkdir", path), workdir=path))

    def withEnvVariable(self, info: Any, name: str, value: str, **_: Any) -> Container:
        env = (*[item for item in self.state.env if item[0] != name], (name, value))
        return Container(self.state.derive(("withEnvVariable", name), env=env))

    def withSecretVariable(self, info: Any, name: str, secret: str) -> Container:
        plaintext = self.state.engine.objects[secret]
        secret_env = (*self.state.secret_env, (name, plaintext))
        return Container(self.state.derive(("withSecretVariable", name), secret_env=secret_env))

    def withMountedCache(self, info: Any, path: str, cache: str, **_: Any) -> Container:
        mounts = (*self.state.mounts, (path, self.state.engine.objects[cache]))
        return Container(self.state.derive(("withMountedCache", path), mounts=mounts))

    def withDirectory(self, info: Any, path: str, source: str, **_: Any) -> Container:
        directory: Path = self.state.engine.objects[source]
        return Container(self.state.derive(("withDirectory", path, directory)))

    def withExec(self, info: Any, args: list[str], **_: Any) -> Container:
        return Container(self.state.derive(("withExec", list(args))))

    def stdout(self, info: Any) -> str:
        return Evaluated.of(self.state).stdout

    def stderr(self, info: Any) -> str:
        return Evaluated.of(self.state).stderr

    def exitCode(self, info: Any) -> int:
        return Evaluated.of(self.state).code

    def _path(self, path: str) -> Path:
        base = _inside(Evaluated.of(self.state).filesystem, self.state.workdir)
        return base / path if not path.startswith("/") else _inside(base.parent, path)

    def file(self, info: Any, path: str, **_: Any) -> Exportable:
        target = self._path(path)
        if not target.is_file():
            raise GraphQLError(f"{path}: no such file or it is a directory")
        return Exportable(target)

    def directory(self, info: Any, path: str, **_: Any) -> Exportable:
        target = self._path(path)
        if not target.is_dir():
            raise GraphQLError(f"{path}: no such directory")
        return Exportable(target)


setattr(Container, "from", Container.from_)


class Exportable:
    def __init__(self, path: Path):
        self.path = path

    def export(self, info: Any, path: str, **_: Any) -> str:
        if self.path.is_dir():
            shutil.copytree(self.path, path, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(self.path, path)
        return path


class Host:
    def __init__(self, engine: Engine):
        self.engine = engine

    def directory(self, info: Any, path: str, **_: Any) -> Handle:
        snapshot = self.engine.scratch()
        _copy_tree(Path(path), snapshot)
        return Handle(self.engine, "Directory", snapshot)


class Handle:
    def __init__(self, engine: Engine, kind: str, value: Any):
        self.engine, self.kind, self.value = engine, kind, value

    def id(self, info: Any) -> str:
        return self.engine.register(self.kind, self.value)


class Query:
    def __init__(self, engine: Engine):
        self.engine = engine

    def version(self, info: Any) -> str:
        return VERSION

    def container(self, info: Any, **_: Any) -> Container:
        return Container(ContainerState(self.engine, None, ("scratch",)))

    def host(self, info: Any) -> Host:
        return Host(self.engine)

    def setSecret(self, info: Any, name: str, plaintext: str) -> Handle:
        return Handle(self.engine, "Secret", plaintext)

    def cacheVolume(self, info: Any, key: str, **_: Any) -> Handle:
        volume = self.engine.root / "volumes" / key
        volume.mkdir(parents=True, exist_ok=True)
        return Handle(self.engine, "CacheVolume", str(volume))


def _resolve(_parent: Any, _info: Any, **arguments: Any) -> Any:
    # graphql-core's default resolver takes `source` itself, which clashes with
    # Dagger's withDirectory(source:) argument.
    value = getattr(_parent, _info.field_name)
    return value(_info, **arguments) if callable(value) else value


def _run_unless_cancelled(
    args: list[str], workdir: Path, env: dict[str, str], engine: Engine
) -> tuple[str, str, int]:
    """Run an exec to its end, or kill it when the query's client disconnects."""
    with subprocess.Popen(
        args,
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        engine.running.add(process.pid)
        try:
            return _wait_unless_cancelled(process)
        finally:
            engine.running.discard(process.pid)


def _wait_unless_cancelled(process: subprocess.Popen[str]) -> tuple[str, str, int]:
    while True:
        try:
            stdout, stderr = process.communicate(timeout=CANCEL_POLL_SECONDS)
            return stdout, stderr, process.returncode
        except subprocess.TimeoutExpired:
            if client_gone():
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
                raise GraphQLError("context canceled") from None


def main(argv: list[str]) -> int:
    if argv[:1] != ["session"]:
        print(f"dagger double: only 'session' is implemented (got {argv})", file=sys.stderr)
        return 2
    mode = os.environ.get("AIORCH_DAGGER_DOUBLE_MODE", "")
    print("engine double starting", file=sys.stderr, flush=True)
    if mode == "exit":
        print("engine double: refusing to start (mode=exit)", file=sys.stderr, flush=True)
        return 1
    if mode == "hang":
        sys.stdin.read()
        return 0
    source = schema_path()
    if source is None:
        print("dagger double: ../shared/dagger schema not found", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="dagger-double-") as root:

        def log(line: str) -> None:
            print(line, file=sys.stderr, flush=True)

        engine = Engine(root=Path(root), log=log)
        sdl, token = source.read_text(), secrets.token_hex(16)
        with engine_double(sdl, Query(engine), token, field_resolver=_resolve) as double:
            print(json.dumps({"port": double.port, "session_token": token}), flush=True)
            sys.stdin.read()  # the client ends the session by closing stdin
            engine.stop_running()
        log("engine double: session closed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
