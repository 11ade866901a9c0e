"""The embedded default: a run with no PREFECT_API_URL, on aiorch's shared local server.

Both sides run the data pipeline on the local runner in a new process, with no
``PREFECT_API_URL``, on one PREFECT_HOME of their own:

- baseline: ``python -c "... data_pipeline(...)"``, where Prefect starts its temporary
  server inside the process, every time;
- candidate: ``aiorch run data-pipeline``, which starts aiorch's shared local server
  once (the warm-up round) and reuses it on every later run.

The candidate's start-up is the time from spawning the command to its flow run's start
as the server recorded it; the target is under 3 s for a second run on the same home.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from aiorch.core.local_server import LocalServer
from aiorch.core.services import free_port
from bench.harness import Comparison, Row, Side, interleave

TARGET_START_SECONDS = 3.0
PLAIN_RUN = (
    "from aiorch.flows.data_pipeline import data_pipeline; "
    "data_pipeline(runner='local', return_state=True)"
)


def _environment(home: Path, port: int) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API")}
    env.update(
        PREFECT_HOME=str(home),
        AIORCH_UI_PORT=str(port),
        AIORCH_DATA_DIR=str(home / "aiorch-data"),
        AIORCH_OUTPUT_DIR=str(home / "outputs"),
    )
    return env


def run(repeat: int) -> list[Row]:
    """One row: Prefect's temporary server per run against the warm shared server."""
    starts: list[float] = []
    with tempfile.TemporaryDirectory(prefix="aiorch-bench-embedded-") as scratch:
        plain_env = _environment(Path(scratch) / "plain", free_port())
        shared_home = Path(scratch) / "shared"
        shared_env = _environment(shared_home, free_port())

        def plain() -> float:
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", PLAIN_RUN], env=plain_env, check=True,
                           capture_output=True)  # fmt: skip
            return time.perf_counter() - started

        def shared() -> float:
            spawned = datetime.now(UTC)
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "aiorch.cli", "run", "data-pipeline", "--runner", "local"],
                env=shared_env,
                check=True,
                capture_output=True,
                text=True,
            )
            took = time.perf_counter() - started
            starts.append(_start_seconds(done.stdout, shared_home, spawned))
            return took

        try:
            baseline, candidate = interleave(plain, shared, repeat)
        finally:
            LocalServer(shared_home).stop()
    later_starts = starts[1:]  # the first (warm-up) run started the server
    start = statistics.median(later_starts)
    return [
        Comparison(
            benchmark="Embedded default: a data-pipeline run without PREFECT_API_URL",
            baseline=Side(label="Prefect's temporary server in the process", samples=baseline),
            candidate=Side(label="aiorch run, shared local server reused", samples=candidate),
            target=f"a second run starts in < {TARGET_START_SECONDS:.0f} s",
            met=start < TARGET_START_SECONDS,
            note=(
                f"from spawning `aiorch run` to its flow run's start: median {start:.2f} s "
                f"(the first run, which started the server: {starts[0]:.2f} s)"
            ),
        )
    ]


def _start_seconds(output: str, home: Path, spawned: datetime) -> float:
    found = re.search(r"flow run id: (\S+)", output)
    state = LocalServer(home).running()
    if found is None or state is None:
        raise RuntimeError(f"aiorch run printed no flow run id or left no server:\n{output}")
    with (
        temporary_settings(updates={PREFECT_API_URL: state.api_url}),
        get_client(sync_client=True) as client,
    ):
        run = client.read_flow_run(UUID(found.group(1)))
    if run.start_time is None:
        raise RuntimeError(f"flow run {run.id} has no start time")
    seconds: float = (run.start_time - spawned).total_seconds()
    return seconds
