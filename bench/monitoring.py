"""What the monitoring artifacts add to a run, measured side by side in one run.

Runs the demo flow (passthrough agent, local runner) interleaved with and without its
monitoring hooks (run report and alert rules), and times the report alone.

    .venv/bin/python -m bench.monitoring [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from uuid import UUID

import anyio

from flows.demo import demo_flow
from tasks.monitoring.run_report import publish_report_for

TEXT = "a b\nc d\ne f\n"


def _seconds(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    """Measure and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    repeat = parser.parse_args().repeat
    bare = demo_flow.with_options(on_completion=[], on_failure=[])
    with_hooks: list[float] = []
    without: list[float] = []
    report: list[float] = []
    last_run: list[UUID] = []

    def monitored() -> None:
        state = demo_flow(text=TEXT, chunk_lines=1, agent_model="passthrough", return_state=True)
        assert state.state_details.flow_run_id is not None
        last_run[:] = [state.state_details.flow_run_id]

    for _ in range(repeat):
        with_hooks.append(_seconds(monitored))
        without.append(_seconds(lambda: bare(text=TEXT, chunk_lines=1, agent_model="passthrough")))
        report.append(_seconds(lambda: anyio.run(publish_report_for, last_run[0])))
    hooked, plain = statistics.median(with_hooks), statistics.median(without)
    print("| case | median s |")
    print("|---|---|")
    print(f"| demo with report and alert hooks | {hooked:.2f} |")
    print(f"| demo without them | {plain:.2f} |")
    print(f"| difference | {hooked - plain:+.2f} |")
    print(f"| publishing one run report alone | {statistics.median(report):.2f} |")


if __name__ == "__main__":
    main()
