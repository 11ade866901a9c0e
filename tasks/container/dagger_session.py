"""Start and stop ``dagger session`` ourselves, with a timeout, and share it per process.

The dagger-io SDK provisions its own session when none is configured, but that cannot be
cancelled or bounded in time. So aiorch runs the CLI itself: ``dagger session`` prints one
JSON line ``{"port": ..., "session_token": ...}`` on stdout, writes engine logs to stderr
and ends when its stdin closes. The port and token go into DAGGER_SESSION_PORT and
DAGGER_SESSION_TOKEN, the variables the SDK (and the global ``dag``) read, so every step
and every code-first pipeline in the process shares the one session. A session lives
until :func:`close_dagger_session` (a ready flow hook) or the process exits.

The engine's log lines belong to the session, not to a step: each goes to the steps
attached to the session when it arrives (:meth:`EngineLog.attached`), masked with the
secrets of every one of them. Lines cannot be told apart by step, so while several steps
share the session each of them logs all of its lines; with none attached a line goes to
the ``aiorch.dagger`` logger.
"""

from __future__ import annotations

import atexit
import contextvars
import json
import logging
import os
import queue
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from typing import IO, Any

from prefect import Flow
from prefect.client.schemas.objects import FlowRun, State

from aiorch.core.redaction import mask, redact
from aiorch.tasks.container.dagger_engine import DaggerEngine
from aiorch.tasks.container.errors import EngineUnavailable

CLOSE_TIMEOUT_SECONDS = 300
RUNNER_HOST_VARIABLE = "_EXPERIMENTAL_DAGGER_RUNNER_HOST"
_logger = logging.getLogger("aiorch.dagger")


class EngineLog:
    """The engine's log lines of one session, delivered to the steps running on it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sinks: dict[int, tuple[Callable[[str], None], tuple[str, ...]]] = {}
        self._next = 0

    @contextmanager
    def attached(self, sink: Callable[[str], None], secrets: Iterable[str] = ()) -> Iterator[None]:
        """Send the lines that arrive meanwhile to ``sink``; mask ``secrets`` in all lines."""
        with self._lock:
            token, self._next = self._next, self._next + 1
            self._sinks[token] = (sink, tuple(value for value in secrets if value))
        try:
            yield
        finally:
            with self._lock:
                del self._sinks[token]

    def write(self, line: str) -> None:
        """Deliver one line to every attached sink, masked with all their secrets.

        Secrets registered in this process (an earlier step's, a provider key) are masked
        too: the engine may replay an operation of a step that has ended.
        """
        with self._lock:
            attached = list(self._sinks.values())
        line = redact(mask(line, (value for _, values in attached for value in values)))
        if not attached:
            _logger.info("engine: %s", line)
        for sink, _ in attached:
            sink(line)


@dataclass
class DaggerSession:
    """A running ``dagger session`` process, how to reach it, and its engine log."""

    process: subprocess.Popen[str]
    port: int
    token: str
    engine: DaggerEngine
    log: EngineLog = field(default_factory=EngineLog)

    def close(self) -> None:
        """End the session by closing its stdin, as the SDK does; kill it if it hangs."""
        if self.process.poll() is None:
            try:
                if self.process.stdin:
                    self.process.stdin.close()
                self.process.wait(timeout=CLOSE_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_lock = threading.Lock()
_current: DaggerSession | None = None


def _forward(stream: IO[str], log: EngineLog) -> None:
    for line in stream:
        log.write(line.rstrip("\n"))


def _read_connect_line(stream: IO[str], lines: queue.Queue[str]) -> None:
    lines.put(stream.readline())


def start_session(engine: DaggerEngine) -> DaggerSession:
    """Start ``dagger session`` and wait at most ``engine.session_timeout_seconds``.

    Raises:
        EngineUnavailable: the CLI is missing, exits, or does not answer in time.
    """
    cli = shutil.which(engine.cli_path)
    if cli is None:
        raise EngineUnavailable(
            f"dagger CLI {engine.cli_path!r} not found; install it or set cli_path on the "
            "DaggerEngine block"
        )
    env = dict(os.environ)
    env.pop("DAGGER_SESSION_PORT", None)
    env.pop("DAGGER_SESSION_TOKEN", None)
    if engine.runner_host:
        env[RUNNER_HOST_VARIABLE] = engine.runner_host
    args = [
        cli,
        "session",
        "--label",
        "dagger.io/sdk.name:python",
        "--label",
        f"dagger.io/sdk.version:{metadata.version('dagger-io')}",
    ]
    process = subprocess.Popen(
        args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    # The forwarder logs through Prefect, which needs the settings of whoever started
    # the session (the API URL may come from a context, not the environment).
    log = EngineLog()
    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(_forward, process.stderr, log), daemon=True).start()
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_connect_line, args=(process.stdout, lines), daemon=True).start()
    try:
        line = lines.get(timeout=engine.session_timeout_seconds)
    except queue.Empty:
        process.kill()
        process.wait()
        raise EngineUnavailable(
            f"dagger session did not start within {engine.session_timeout_seconds:g} s; "
            "check the engine (runner_host) or raise session_timeout_seconds"
        ) from None
    try:
        params: dict[str, Any] = json.loads(line)
        port, token = int(params["port"]), str(params["session_token"])
    except (ValueError, KeyError, TypeError):
        process.kill()
        process.wait()
        raise EngineUnavailable(
            f"dagger session exited with {process.returncode} before reporting a port; "
            "see the engine log lines above"
        ) from None
    return DaggerSession(process=process, port=port, token=token, engine=engine, log=log)


@dataclass(frozen=True)
class ActiveSession:
    """The session a step talks to: what to tell the user, and where its engine logs go."""

    description: str
    log: EngineLog


def ensure_session(engine: DaggerEngine) -> ActiveSession:
    """Make sure the SDK has a session to talk to; say which one.

    A session given by the environment (``dagger run``, a CI job) is used as it is (its
    engine logs are not aiorch's to read); otherwise the process's own session is
    started on first use, or restarted when a step asks for another engine.
    """
    global _current
    with _lock:
        if _current is None and os.environ.get("DAGGER_SESSION_PORT"):
            return ActiveSession("session from DAGGER_SESSION_PORT", EngineLog())
        if _current is not None and (
            _current.engine != engine or _current.process.poll() is not None
        ):
            _close_locked()
        if _current is None:
            _current = start_session(engine)
            os.environ["DAGGER_SESSION_PORT"] = str(_current.port)
            os.environ["DAGGER_SESSION_TOKEN"] = _current.token
            return ActiveSession(f"started dagger session on port {_current.port}", _current.log)
        return ActiveSession(f"dagger session on port {_current.port}", _current.log)


def _close_locked() -> None:
    global _current
    if _current is None:
        return
    session, _current = _current, None
    if os.environ.get("DAGGER_SESSION_PORT") == str(session.port):
        os.environ.pop("DAGGER_SESSION_PORT", None)
        os.environ.pop("DAGGER_SESSION_TOKEN", None)
    session.close()


def close_dagger_session(
    flow: Flow[..., Any] | None = None,
    flow_run: FlowRun | None = None,
    state: State[Any] | None = None,
) -> None:
    """Close the process's Dagger session, if any.

    Its signature fits Prefect's flow hooks, so a flow ends its session with it:
    ``@flow(on_completion=[close_dagger_session], on_failure=[close_dagger_session],
    on_cancellation=[close_dagger_session], on_crashed=[close_dagger_session])``.
    """
    with _lock:
        _close_locked()


atexit.register(close_dagger_session)
