"""A whole process: one flow of 20 passthrough agent calls, retried once, against a server.

What a user's ``python my_flow.py`` costs end to end, imports included: aiorch's
``run_agent`` with FastAgent's passthrough model against pydantic-ai's Prefect
durability wrapper with its ``TestModel``, each in a new interpreter on the benchmark's
Prefect server (SQLite). The flow fails once after its 20 calls and Prefect retries it,
so the row also shows what a retry re-runs: the task runs each flow run holds, read from
the server afterwards, and the answers the server refused with 503 (database busy).
"""

from __future__ import annotations

import os
import re
import resource
import statistics
import subprocess
import sys
import time
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.settings import PREFECT_API_URL

from bench.harness import Comparison, NotRun, Row, Side, interleave

CALLS = 20
FLOW = """
import resource, sys
from prefect import flow
from prefect.runtime import flow_run
{setup}

@flow(name="bench-twenty-calls-{side}", retries=1)
def twenty() -> None:
    for number in range({calls}):
        {call}
    if flow_run.run_count == 1:
        raise RuntimeError("fail once, so that Prefect retries the flow run")

state = twenty(return_state=True)
print("flow run id:", state.state_details.flow_run_id)
print("max rss kb:", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
AIORCH = FLOW.format(
    side="aiorch",
    calls=CALLS,
    setup=(
        "from aiorch import Agent, run_agent\n"
        "agent = Agent(instruction='Repeat the user.', model='passthrough')"
    ),
    call="run_agent(agent, f'prompt {number}', cache_scope='flow-run')",
)
PYDANTIC_AI = FLOW.format(
    side="pydantic-ai",
    calls=CALLS,
    setup=(
        "from pydantic_ai import Agent\n"
        "from pydantic_ai.durable_exec.prefect import PrefectDurability\n"
        "from pydantic_ai.models.test import TestModel\n"
        "agent = Agent(TestModel(), name='bench', capabilities=[PrefectDurability()])"
    ),
    call="agent.run_sync(f'prompt {number}')",
)


class _Side:
    """Samples of one side: wall time, and what each run left behind."""

    def __init__(self, script: str) -> None:
        self.script = script
        self.task_runs: list[int] = []
        self.rss_mb: list[float] = []
        self.cpu_seconds: list[float] = []
        self.refusals: list[int] = []

    def sample(self) -> float:
        env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", self.script], env=env, capture_output=True, text=True
        )
        took = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        found = re.search(r"flow run id: (\S+)", done.stdout)
        rss = re.search(r"max rss kb: (\d+)", done.stdout)
        if done.returncode != 0 or found is None or rss is None:
            raise RuntimeError(
                f"the flow process failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
            )
        self.cpu_seconds.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        self.rss_mb.append(int(rss.group(1)) / 1024)
        self.refusals.append(len(re.findall(r"\b503\b", done.stderr)))
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(found.group(1))])),
                limit=10 * CALLS,
            )
        self.task_runs.append(len(runs))
        return took

    def summary(self, name: str) -> str:
        return (
            f"{name}: {statistics.median(self.task_runs):.0f} task runs per retried flow run, "
            f"{statistics.median(self.cpu_seconds):.1f} s CPU, "
            f"{statistics.median(self.rss_mb):.0f} MiB peak, "
            f"{sum(self.refusals)} answers 503 in {len(self.refusals)} runs"
        )


def run(repeat: int) -> list[Row]:
    """One row: the whole process, aiorch against pydantic-ai; the details in its note."""
    try:
        import pydantic_ai.durable_exec.prefect  # noqa: F401
    except ImportError:
        return [
            NotRun(
                benchmark="Whole process, 20 agent calls",
                reason="pydantic-ai is not installed (bench extra)",
            )
        ]
    peer, ours = _Side(PYDANTIC_AI), _Side(AIORCH)
    baseline, candidate = interleave(peer.sample, ours.sample, repeat)
    fewer_or_same = statistics.median(ours.task_runs) <= statistics.median(peer.task_runs)
    return [
        Comparison(
            benchmark=f"Whole process: a flow of {CALLS} agent calls, retried once",
            baseline=Side(label="pydantic-ai PrefectDurability + TestModel", samples=baseline),
            candidate=Side(label="run_agent + passthrough", samples=candidate),
            target="ratio <= 1; task runs <= the peer's; no 503",
            met=statistics.median(candidate) <= statistics.median(baseline)
            and fewer_or_same
            and sum(ours.refusals) == 0,
            note=f"{ours.summary('aiorch')}; {peer.summary('pydantic-ai')}",
        )
    ]
