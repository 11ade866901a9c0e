"""Container steps across processes: a cache shared between processes, and the
per-process bound on parallel steps (AIORCH_MAX_PARALLEL_STEPS)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from aiorch.core.services import free_port

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import json, sys
from prefect import flow
from aiorch.tasks.container import ContainerStep, run_step

steps = [ContainerStep.model_validate(spec) for spec in json.loads(sys.argv[1])]

@flow(name="process-test")
def run_all():
    return [result.model_dump(mode="json") for result in run_step.map(steps, "local").result()]

print(json.dumps(run_all()))
"""


def _run_in_new_process(prefect_api: str, specs: str, **env: str) -> list[dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, specs],
        cwd=ROOT,
        env={**os.environ, "PREFECT_API_URL": prefect_api, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results: list[dict[str, object]] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def test_a_result_cached_by_one_process_serves_another(prefect_api: str, scratch_dir: Path) -> None:
    ledger = scratch_dir / "ledger"
    spec = {
        "name": f"shared-{free_port()}",
        "image": "unused",
        "commands": [["sh", "-c", f"echo ran >> {ledger}; mkdir out; echo data > out/f"]],
        "outputs": ["out"],
    }
    first = _run_in_new_process(prefect_api, json.dumps([spec]))
    second = _run_in_new_process(prefect_api, json.dumps([spec]))
    assert [first[0]["cache_hit"], second[0]["cache_hit"]] == [False, True]
    assert ledger.read_text() == "ran\n"
    outputs = second[0]["outputs"]
    assert isinstance(outputs, dict)
    assert Path(outputs["out"], "f").read_text() == "data\n"


def test_parallel_steps_are_bounded_per_process(prefect_api: str, scratch_dir: Path) -> None:
    ledger = scratch_dir / "ledger"
    specs = [
        {
            "name": f"bounded-{index}",
            "image": "unused",
            "commands": [["sh", "-c", f"echo start >> {ledger}; sleep 0.6; echo end >> {ledger}"]],
        }
        for index in range(4)
    ]
    results = _run_in_new_process(prefect_api, json.dumps(specs), AIORCH_MAX_PARALLEL_STEPS="2")
    assert len(results) == 4
    running = peak = 0
    for event in ledger.read_text().split():
        running += 1 if event == "start" else -1
        peak = max(peak, running)
    assert peak == 2, ledger.read_text()
