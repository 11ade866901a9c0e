"""A three-step flow the kill-and-rerun test starts in its own process.

    python -m tests.resume_flow OUTPUT_DIR GATE_FILE LEDGER_FILE

Steps one and two finish quickly; step three writes ``start`` to LEDGER_FILE, waits
until GATE_FILE exists and writes ``end``, so the test can kill the process while step
three runs, then rerun it with the gate open.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow

from aiorch.tasks.container import ContainerStep, run_step


def _step(name: str, script: str) -> ContainerStep:
    return ContainerStep(
        name=name,
        image="busybox",
        commands=[["sh", "-c", script]],
        outputs=("out",),
    )


@flow(name="aiorch-resume-test")
def three_steps(output_dir: str, gate: str, ledger: str) -> list[bool]:
    """Run the steps in order; each writes a file and the time it ran."""
    results = [
        run_step(_step(name, script), "local", export_to=Path(output_dir) / name)
        for name, script in [
            ("resume-one", "mkdir -p out && date +%s%N > out/ran && echo one > out/value"),
            ("resume-two", "mkdir -p out && date +%s%N > out/ran && echo two > out/value"),
            (
                "resume-three",
                f"echo start >> {ledger}; while [ ! -e {gate} ]; do sleep 0.1; done; "
                f"echo end >> {ledger}; "
                "mkdir -p out && date +%s%N > out/ran && echo three > out/value",
            ),
        ]
    ]
    return [result.cache_hit for result in results]


if __name__ == "__main__":
    print(three_steps(sys.argv[1], sys.argv[2], sys.argv[3]))
