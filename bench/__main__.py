"""Run every benchmark, print one markdown table, write it to docs/benchmarks.md.

    scripts/bench                      # everything, default repetitions
    scripts/bench --only steps agents  # some of them
    scripts/bench --repeat 3 --output /tmp/benchmarks.md

Benchmarks that need a Prefect API talk to a dedicated Prefect server (SQLite) started
for the run, not to the embedded one; the backend benchmark starts its own two.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from bench.harness import NotRun, Row, markdown_table
from bench.machine import describe_machine

BENCHMARKS: dict[str, str] = {
    "startup": "bench.startup",
    "embedded": "bench.embedded",
    "process": "bench.process",
    "steps": "bench.steps",
    "agents": "bench.agents",
    "backends": "bench.backends",
    "breakers": "bench.breakers",
    "monitoring": "bench.monitoring",
    "pools": "bench.pools",
    "messaging": "bench.messaging",
    "evaluation": "bench.evaluation",
    "gateway": "bench.gateway",
    "scale": "bench.scale",
}
DOCUMENT = Path("docs/benchmarks.md")
PREAMBLE = """\
# Benchmarks

Written by `scripts/bench` (`python -m bench`); do not edit by hand. Every row measures
a baseline and a candidate side by side in one run, interleaved (AB, BA, ...), and
reports both medians and their ratio (candidate / baseline): the machines are noisy, so
compare ratios, not absolute times. A missed target is marked **MISSED**; the notes say
why where it is known. What each benchmark does is in its module under `bench/`.
"""


def _runner(module: str) -> Callable[[int], list[Row]]:
    imported = __import__(module, fromlist=["run"])
    run: Callable[[int], list[Row]] = imported.run
    return run


def run_benchmarks(names: list[str], repeat: int) -> list[Row]:
    """Run the named benchmarks against a dedicated Prefect server; every row."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from aiorch.core.services import free_port
    from aiorch.testing.prefect_server import running_server

    rows: list[Row] = []
    with ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aiorch-bench-")))
        os.environ["AIORCH_DATA_DIR"] = str(home / "aiorch-data")
        os.environ["AIORCH_OUTPUT_DIR"] = str(home / "aiorch-outputs")
        api_url = stack.enter_context(running_server(home / "prefect", free_port()))
        stack.enter_context(temporary_settings(updates={PREFECT_API_URL: api_url}))
        for name in names:
            print(f"bench: {name} ...", flush=True)
            try:
                rows.extend(_runner(BENCHMARKS[name])(repeat))
            except Exception as error:  # one broken benchmark must not hide the others
                traceback.print_exc()
                rows.append(NotRun(benchmark=name, reason=f"failed: {error!r}"[:300]))
        # Logs and events still queued reach the server before it stops.
        APILogWorker.drain_all()
        EventsWorker.drain_all()
    return rows


def main() -> int:
    """Parse the arguments, run, print and write the document."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), metavar="NAME")
    parser.add_argument("--repeat", type=int, default=9, help="samples per side (default 9)")
    parser.add_argument("--output", type=Path, default=DOCUMENT, help="markdown to write")
    parser.add_argument("--no-write", action="store_true", help="only print the table")
    arguments = parser.parse_args()
    names = arguments.only or list(BENCHMARKS)
    rows = run_benchmarks(names, arguments.repeat)
    table = markdown_table(rows)
    print(table)
    if not arguments.no_write:
        document = (
            f"{PREAMBLE}\n## Machine\n\n{describe_machine()}\n\n"
            f"## Results ({arguments.repeat} samples per side unless noted)\n\n{table}\n"
        )
        arguments.output.write_text(document)
        print(f"bench: wrote {arguments.output}")
    return (
        1 if any(isinstance(row, NotRun) and row.reason.startswith("failed") for row in rows) else 0
    )


if __name__ == "__main__":
    raise SystemExit(main())
