"""The step scenarios against a real Dagger engine, wherever a dagger CLI is installed.

No engine can run on this project's CI machines (no registry serves it), so these skip
there; on a laptop or CI runner with the dagger CLI and Docker they pull alpine and run.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prefect import flow

from aiorch.tasks.container import ContainerStep, StepFailed, StepInput, StepResult, run_step
from aiorch.tasks.container.dagger_engine import DaggerEngine
from aiorch.tasks.container.dagger_session import close_dagger_session

IMAGE = "alpine:3.20"


def _real_dagger_cli() -> str | None:
    cli = shutil.which("dagger")
    if cli is None:
        return None
    try:
        version = subprocess.run([cli, "version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return cli if version.stdout.startswith("dagger v") else None


REAL_CLI = _real_dagger_cli()
pytestmark = pytest.mark.skipif(
    REAL_CLI is None,
    reason="no real dagger CLI installed (none can be installed without internet access)",
)


@pytest.fixture(autouse=True)
def _fresh_session() -> None:
    close_dagger_session()


def _run(step: ContainerStep, **options: Any) -> StepResult:
    engine = DaggerEngine(cli_path=REAL_CLI or "dagger", session_timeout_seconds=600)

    @flow(name="real-dagger-test", on_completion=[close_dagger_session])
    def one() -> StepResult:
        result: StepResult = run_step(step, "dagger", dagger_engine=engine, **options)
        return result

    return one()


def test_output_and_exit_codes(prefect_api: str) -> None:
    ok = ContainerStep(name="real-ok", image=IMAGE, commands=[["sh", "-c", "echo hi; echo e >&2"]])
    result = _run(ok, cache=False)
    assert (result.stdout_tail, result.stderr_tail) == ("hi", "e")
    bad = ContainerStep(name="real-bad", image=IMAGE, commands=[["sh", "-c", "exit 5"]])
    with pytest.raises(StepFailed) as caught:
        _run(bad, cache=False)
    assert caught.value.exit_code == 5


def test_inputs_and_outputs(prefect_api: str, scratch_dir: Path) -> None:
    (scratch_dir / "in").mkdir()
    (scratch_dir / "in" / "a.txt").write_text("alpha\n")
    step = ContainerStep(
        name="real-io",
        image=IMAGE,
        commands=[["sh", "-c", "mkdir -p out && tr a-z A-Z < data/a.txt > out/a.txt"]],
        inputs=[StepInput(source=scratch_dir / "in", target="data")],
        outputs=["out"],
    )
    result = _run(step, cache=False, export_to=scratch_dir / "export")
    assert (result.outputs["out"] / "a.txt").read_text() == "ALPHA\n"
