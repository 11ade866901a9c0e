"""Start-up: importing aiorch's public API against importing Prefect, in fresh interpreters.

Each sample is one new Python process, timed from spawn to exit, so the page cache is
warm for both sides alike after the warm-up round. The baseline imports what any Prefect
flow module imports (``from prefect import flow, task``); the candidate imports that and
the names a flow module takes from aiorch (tests/test_import_cost.py guards the list of
packages they load).
"""

from __future__ import annotations

import subprocess
import sys

from bench.harness import Comparison, Row, Side, interleave, timed

PREFECT_IMPORT = "from prefect import flow, task"
# What a flow module typically imports from aiorch to define its flows.
AUTHORING = (
    "from aiorch import Agent, AgentCallError, AgentResult, CircuitBreaker, ContainerStep, "
    "ModelProvider, RetryPolicy, StepError, StepInput, arun_agent, arun_step, "
    "evaluate_alerts, publish_run_report, report_task_failure, run_agent, run_step, "
    "wait_with_progress"
)
TARGET_RATIO = 1.2


def _interpreter(statement: str) -> None:
    subprocess.run([sys.executable, "-c", statement], check=True)


def run(repeat: int) -> list[Row]:
    """The import-time comparison as one row."""
    baseline, candidate = interleave(
        timed(lambda: _interpreter(PREFECT_IMPORT)),
        timed(lambda: _interpreter(f"{PREFECT_IMPORT}; {AUTHORING}")),
        repeat,
    )
    row = Comparison(
        benchmark="Start-up: import the public API",
        baseline=Side(label="python -c 'from prefect import flow, task'", samples=baseline),
        candidate=Side(label="the same, then the authoring names from aiorch", samples=candidate),
        target=f"ratio <= {TARGET_RATIO}",
    )
    return [
        row.model_copy(
            update={
                "met": row.ratio <= TARGET_RATIO,
                "note": f"aiorch adds {row.extra * 1000:.0f} ms to a new interpreter",
            }
        )
    ]
