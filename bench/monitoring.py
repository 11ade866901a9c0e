"""What the monitoring hooks add to a run.

The demo flow (passthrough agent, local runner) with and without its monitoring hooks
(run report and alert rules), interleaved.
"""

from __future__ import annotations

from aiorch.flows.demo import demo_flow
from bench.harness import Comparison, Row, Side, interleave, timed

TEXT = "a b\nc d\ne f\n"


def run(repeat: int) -> list[Row]:
    """The demo with and without its report and alert hooks."""
    bare = demo_flow.with_options(on_completion=[], on_failure=[])
    without, hooked = interleave(
        timed(lambda: bare(text=TEXT, chunk_lines=1, agent_model="passthrough")),
        timed(lambda: demo_flow(text=TEXT, chunk_lines=1, agent_model="passthrough")),
        max(2, repeat // 3),
    )
    return [
        Comparison(
            benchmark="Run report and alert hooks (demo flow)",
            baseline=Side(label="demo without hooks", samples=without),
            candidate=Side(label="demo with hooks", samples=hooked),
        )
    ]
