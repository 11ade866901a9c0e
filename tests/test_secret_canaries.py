"""One canary value per secret source, then a search of everywhere they could land.

Sources: a provider key from the environment (OPENAI_API_KEY), a provider block's
``api_key``, a step's SecretStr, a Prefect Secret block behind a step's SecretRef, a
Secret block behind an MCP server's ``secret_env``. Each is echoed by something
careless: a provider's 401 quoting the key, the user's command printing it, an MCP
tool's error quoting it. Runs that fail, complete and crash (kill -9), each in its own
process. Searched: the process output, the Prefect database (logs, states, artifacts,
events, task cache keys), the server's log, result storage, aiorch's data and output
directories (file names and contents). Zero hits.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

from prefect.blocks.system import Secret
from pydantic import SecretStr

from aiorch.agent_blocks import ModelProvider
from aiorch.core.redaction import MASK
from aiorch.testing.fault_proxy import Fault, running_fault_proxy
from aiorch.testing.prefect_server import poll_events
from tests.conftest import SERVER_HOME

ROOT = Path(__file__).resolve().parents[1]
RUN_DEADLINE_SECONDS = 300


def _search(root: Path, canaries: dict[str, str]) -> list[str]:
    """Where any canary appears under ``root``: in a file's name or in its bytes."""
    hits = []
    for path in root.rglob("*"):
        for source, value in canaries.items():
            if value in str(path):
                hits.append(f"{source} in the name {path}")
            elif path.is_file() and value.encode() in path.read_bytes():
                hits.append(f"{source} in {path}")
    return hits


def _database_dump() -> str:
    connection = sqlite3.connect(f"file:{SERVER_HOME / 'prefect.db'}?mode=ro", uri=True)
    try:
        return "\n".join(connection.iterdump())
    finally:
        connection.close()


def _in_text(where: str, text: str, canaries: dict[str, str]) -> list[str]:
    return [f"{source} in {where}" for source, value in canaries.items() if value in text]


def test_no_secret_reaches_any_output_of_failing_completed_or_crashed_runs(
    prefect_api: str, scratch_dir: Path
) -> None:
    canaries = {
        source: f"sk-canary-{source}-{uuid4().hex}"
        for source in ("environment", "provider-block", "step", "secret-block", "mcp")
    }
    Secret(value=canaries["secret-block"]).save("canary-step-secret", overwrite=True)
    Secret(value=canaries["mcp"]).save("canary-mcp-secret", overwrite=True)
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_api,
        "PREFECT_HOME": str(scratch_dir / "prefect-home"),
        "AIORCH_DATA_DIR": str(scratch_dir / "aiorch-data"),
        "AIORCH_OUTPUT_DIR": str(scratch_dir / "aiorch-outputs"),
        "OPENAI_API_KEY": canaries["environment"],
        "CANARY_STEP": canaries["step"],
    }
    since = datetime.now(UTC)
    outputs = []
    refusing = Fault(status=401, message="invalid key", echo_key=True)
    with running_fault_proxy(default=refusing) as proxy:
        ModelProvider(
            kind="generic", base_url=proxy.base_url, api_key=SecretStr(canaries["provider-block"])
        ).save("canary-provider", overwrite=True)
        for scenario in ("failing", "succeeding"):
            done = subprocess.run(
                [sys.executable, "-m", "tests.canary_flows", scenario, proxy.base_url, "-"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=RUN_DEADLINE_SECONDS,
            )
            outputs.append(done.stdout + done.stderr)
        assert len(proxy.received) == 2  # both provider keys were sent, and echoed back
    assert "AgentCallError" in outputs[0], outputs[0][-3000:]
    assert MASK in outputs[0]  # the echoed values were there, masked

    crashing = subprocess.Popen(
        [sys.executable, "-m", "tests.canary_flows", "crashing", "-", str(scratch_dir)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + RUN_DEADLINE_SECONDS
    while not (scratch_dir / "started").exists():
        assert crashing.poll() is None, crashing.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "the crashing flow's step never started"
        time.sleep(0.2)
    crashing.send_signal(signal.SIGKILL)
    outputs.append(crashing.communicate(timeout=30)[0])

    # What the runs sent reaches the database in the background: wait for the last of it.
    for output, final in zip(outputs, ("Failed", "Completed", "Running"), strict=True):
        run_id = re.search(r"^flow-run (\S+)$", output, re.M)
        assert run_id is not None, output[-3000:]
        poll_events(
            prefect_api,
            f"prefect.flow-run.{run_id.group(1)}",
            1,
            names=[f"prefect.flow-run.{final}"],
            deadline_seconds=60,
        )
    reported = poll_events(
        prefect_api, None, 3, names=["aiorch.failure.reported"], since=since, deadline_seconds=60
    )
    kinds = {event["resource"]["aiorch.problem.kind"] for event in reported}
    assert kinds >= {"provider-error", "step-failed"}, kinds

    hits = [
        hit
        for scenario, output in zip(("failing", "succeeding", "crashing"), outputs, strict=True)
        for hit in _in_text(f"the output of the {scenario} run", output, canaries)
    ]
    dump = _database_dump()
    hits += _in_text("the Prefect database", dump, canaries)
    hits += _search(scratch_dir, canaries)
    for log in SERVER_HOME.glob("server-*.log"):
        hits += _in_text("the server log", log.read_text(errors="replace"), canaries)
    assert hits == []
    assert MASK in dump  # the failure reports and logs are there, with the secrets masked
