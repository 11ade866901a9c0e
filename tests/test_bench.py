"""The benchmark harness: interleaving, medians and ratios, the table, one real run.

The numbers themselves are checked by the benchmarks (scripts/bench), never by tests;
these tests check that the harness measures what it says and that the command runs.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.harness import (
    Comparison,
    NotRun,
    Section,
    Side,
    interleave,
    markdown_table,
    rotate,
)

ROOT = Path(__file__).resolve().parents[1]


def test_interleave_alternates_which_side_goes_first_and_drops_warmup() -> None:
    calls: list[str] = []

    def sampler(name: str, value: float) -> object:
        def sample() -> float:
            calls.append(name)
            return value

        return sample

    baseline, candidate = interleave(sampler("a", 1.0), sampler("b", 2.0), repeat=3, warmup=1)  # type: ignore[arg-type]
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert baseline == [1.0, 1.0, 1.0]
    assert candidate == [2.0, 2.0, 2.0]
    with pytest.raises(ValueError, match="repeat must be at least 1"):
        interleave(lambda: 0.0, lambda: 0.0, repeat=0)


def test_rotate_puts_every_sampler_first_in_turn() -> None:
    calls: list[str] = []

    def sampler(name: str) -> Callable[[], float]:
        def sample() -> float:
            calls.append(name)
            return float(len(calls))

        return sample

    samples = rotate([sampler("a"), sampler("b"), sampler("c")], repeat=3, warmup=0)
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert samples == [[1.0, 6.0, 8.0], [2.0, 4.0, 9.0], [3.0, 5.0, 7.0]]


def test_comparisons_report_medians_ratios_and_missed_targets() -> None:
    row = Comparison(
        benchmark="pipe | in name",
        baseline=Side(label="base", samples=[0.010, 0.030, 0.020]),
        candidate=Side(label="cand", samples=[0.050, 0.040, 0.060]),
        target="ratio <= 1",
        met=False,
        note="slower on purpose",
    )
    assert row.baseline.median == pytest.approx(0.020)
    assert row.ratio == pytest.approx(2.5)
    assert row.extra == pytest.approx(0.030)
    rate = Comparison(
        benchmark="rate",
        baseline=Side(label="a", samples=[10.0]),
        candidate=Side(label="b", samples=[40.0]),
        unit="per s",
    )
    table = markdown_table(
        [
            row,
            rate,
            NotRun(benchmark="docker", reason="no engine"),
            Section(title="curve", markdown="| n |\n|---|\n| 1 |"),
        ]
    )
    assert (
        "| pipe \\| in name | base | 20.0 ms | cand | 50.0 ms | 2.50 | ratio <= 1 | **MISSED** |"
        in table
    )
    assert "| rate | a | 10.0 per s | b | 40.0 per s | 4.00 | - | - |" in table
    assert "- pipe | in name: slower on purpose" in table
    assert "### curve" in table
    assert table.rstrip().endswith("- docker: no engine")


def test_the_bench_command_runs_and_writes_its_document(tmp_path: Path) -> None:
    """A real run of two benchmarks, one sample each: the command works end to end."""
    output = tmp_path / "benchmarks.md"
    command = [sys.executable, "-m", "bench", "--only", "agents", "breakers", "--repeat", "1"]
    done = subprocess.run(
        [*command, "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    document = output.read_text()
    assert "## Machine" in document
    assert "logical cores" in document
    for benchmark in (
        "Agent call, passthrough model",
        "Agent call vs pydantic-ai's Prefect wrapper",
        "Closed breaker, SQLite store",
        "Closed breaker, SQLite store, 4 processes at once",
    ):
        assert f"| {benchmark} |" in document, benchmark
    assert "failed:" not in document
