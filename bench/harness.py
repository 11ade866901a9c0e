"""The benchmark harness: two things measured side by side, interleaved, as medians.

Machines here are noisy (shared cores, a database on the same disk), so a benchmark never
quotes one absolute time: it runs its baseline and its candidate alternately in the same
process (AB, BA, AB, ... so drift and warm-up hit both sides alike), keeps every sample,
and reports both medians and their ratio, with the target the ratio is held to.

Example:
    ```python
    import time

    from bench.harness import Comparison, Side, interleave, timed

    baseline, candidate = interleave(timed(lambda: time.sleep(0.01)), timed(lambda: None), 3)
    row = Comparison(
        benchmark="sleep vs nothing",
        baseline=Side(label="sleep 10 ms", samples=baseline),
        candidate=Side(label="nothing", samples=candidate),
    )
    print(row.ratio)
    ```
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from aiorch.core.markdown import table_cell

Unit = Literal["s", "per s", "tokens/s"]


def timed(action: Callable[[], object]) -> Callable[[], float]:
    """A sampler that returns how many seconds ``action`` took."""

    def sample() -> float:
        started = time.perf_counter()
        action()
        return time.perf_counter() - started

    return sample


def interleave(
    baseline: Callable[[], float],
    candidate: Callable[[], float],
    repeat: int,
    warmup: int = 1,
) -> tuple[list[float], list[float]]:
    """``repeat`` samples of each, alternating which goes first; warm-up rounds dropped."""
    first, second = rotate([baseline, candidate], repeat, warmup)
    return first, second


def rotate(
    samplers: Sequence[Callable[[], float]], repeat: int, warmup: int = 1
) -> list[list[float]]:
    """``repeat`` samples of each sampler, the order rotated every round (ABC, BCA, CAB).

    Every sampler goes first, second, ... equally often, so warm caches and drift favour
    none of them. Warm-up rounds are run and dropped.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1 (got {repeat})")
    samples: list[list[float]] = [[] for _ in samplers]
    for round_number in range(warmup + repeat):
        shift = round_number % len(samplers)
        order = list(range(len(samplers)))[shift:] + list(range(len(samplers)))[:shift]
        measured = {index: samplers[index]() for index in order}
        if round_number >= warmup:
            for index, value in measured.items():
                samples[index].append(value)
    return samples


class Side(BaseModel):
    """One side of a comparison: what was measured and every sample."""

    model_config = ConfigDict(frozen=True)

    label: str
    samples: list[float] = Field(min_length=1)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def median(self) -> float:
        """The median sample."""
        return statistics.median(self.samples)


class Comparison(BaseModel):
    """A baseline and a candidate measured side by side, and the target between them."""

    model_config = ConfigDict(frozen=True)

    benchmark: str
    baseline: Side
    candidate: Side
    unit: Unit = "s"
    target: str = Field(default="", description="The target in words, as the table shows it.")
    met: bool | None = Field(default=None, description="None: no target, or not judged.")
    note: str = ""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ratio(self) -> float:
        """Candidate median over baseline median."""
        return self.candidate.median / self.baseline.median if self.baseline.median else 0.0

    @property
    def extra(self) -> float:
        """Candidate median minus baseline median (seconds for time benchmarks)."""
        return self.candidate.median - self.baseline.median


class NotRun(BaseModel):
    """A benchmark that could not run here, and why."""

    model_config = ConfigDict(frozen=True)

    benchmark: str
    reason: str


class Section(BaseModel):
    """More than a ratio says (a curve, a breakdown), printed after the table."""

    model_config = ConfigDict(frozen=True)

    title: str
    markdown: str


Row = Comparison | NotRun | Section


def format_value(value: float, unit: Unit) -> str:
    """A median for the table: ms below a second, else seconds; rates as they are."""
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    return f"{value:.1f} {unit}"


def verdict(row: Comparison) -> str:
    """Met / MISSED / - for the table."""
    if row.met is None:
        return "-"
    return "met" if row.met else "**MISSED**"


def markdown_table(rows: list[Row]) -> str:
    """The results as one markdown table, then notes, sections and what did not run."""
    lines = [
        "| benchmark | baseline | median | candidate | median | ratio | target | result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    skipped = []
    sections = []
    for row in rows:
        if isinstance(row, NotRun):
            skipped.append(f"- {row.benchmark}: {row.reason}")
            continue
        if isinstance(row, Section):
            sections.append(f"### {row.title}\n\n{row.markdown}")
            continue
        cells = [
            row.benchmark,
            row.baseline.label,
            format_value(row.baseline.median, row.unit),
            row.candidate.label,
            format_value(row.candidate.median, row.unit),
            f"{row.ratio:.2f}",
            row.target or "-",
            verdict(row),
        ]
        lines.append("| " + " | ".join(table_cell(cell) for cell in cells) + " |")
    notes = [
        f"- {row.benchmark}: {row.note}" for row in rows if isinstance(row, Comparison) and row.note
    ]
    text = "\n".join(lines)
    if notes:
        text += "\n\nNotes:\n\n" + "\n".join(notes)
    if sections:
        text += "\n\n" + "\n\n".join(sections)
    if skipped:
        text += "\n\nNot run here:\n\n" + "\n".join(skipped)
    return text
