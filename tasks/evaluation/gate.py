"""The CI gate of an evaluation, and the summary every evaluation publishes.

Exit codes of ``aiorch eval run`` (:data:`EXIT_CODES`):

| code | meaning |
|---|---|
| 0 | every agent passed the gate |
| 1 | an agent's mean score is below ``--min-score`` |
| 2 | bad input: the dataset, a check, an agent block or an option (nothing was run) |
| 3 | more results than ``--max-errors`` could not be scored (an agent or grader failed) |
| 4 | an agent regressed against ``--baseline``: its change's whole interval is below zero |

Errors are checked first: a score computed over fewer samples than asked says less. A
score below the minimum (1) is reported before a regression (4); every failure is listed.

Example:
    ```python
    from aiorch.tasks.evaluation.gate import Gate

    print(Gate(min_score=0.8).model_dump())
    ```
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ConfigDict, Field

from aiorch.core.models import AiorchModel
from aiorch.tasks.evaluation.compare import BaselineComparison
from aiorch.tasks.evaluation.metrics import AgentMetrics

PASSED, SCORE_TOO_LOW, BAD_INPUT, TOO_MANY_ERRORS, REGRESSED = 0, 1, 2, 3, 4
EXIT_CODES = {
    PASSED: "every agent passed the gate",
    SCORE_TOO_LOW: "an agent's mean score is below the minimum",
    BAD_INPUT: "bad input; nothing was run",
    TOO_MANY_ERRORS: "too many results could not be scored",
    REGRESSED: "an agent regressed against the baseline",
}


class Gate(AiorchModel):
    """What an evaluation must reach to pass."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_score: float | None = Field(
        default=None, ge=0.0, le=1.0, description="The lowest mean score that passes."
    )
    max_errors: int = Field(
        default=0, ge=0, description="Results per agent that may fail to be scored."
    )


class Verdict(AiorchModel):
    """The gate's answer: the exit code and, for each failure, why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exit_code: int
    failures: list[str] = Field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every agent passed."""
        return self.exit_code == PASSED


def judge(
    gate: Gate, agents: list[AgentMetrics], baseline: Sequence[BaselineComparison] = ()
) -> Verdict:
    """Hold each agent's figures against ``gate``, and against its ``baseline``."""
    errors = [
        f"{m.agent}: {m.errors} of {m.results} results could not be scored "
        f"(allowed {gate.max_errors})"
        for m in agents
        if m.errors > gate.max_errors
    ]
    if errors:
        return Verdict(exit_code=TOO_MANY_ERRORS, failures=errors)
    low = [
        f"{m.agent}: mean score {_figure(m.mean)} is below {gate.min_score:g}"
        for m in agents
        if gate.min_score is not None and (m.mean is None or m.mean < gate.min_score)
    ]
    regressed = [
        f"{c.agent}: regressed against the baseline by {-(c.difference or 0.0):.3f} "
        f"(95 % interval of the change {c.ci_low:+.3f} to {c.ci_high:+.3f}, "
        f"{c.shared_samples} samples)"
        for c in baseline
        if c.regressed
    ]
    code = SCORE_TOO_LOW if low else REGRESSED if regressed else PASSED
    return Verdict(exit_code=code, failures=low + regressed)


def summary_markdown(name: str, agents: list[AgentMetrics], verdict: Verdict) -> str:
    """The evaluation's summary table, and the gate's verdict."""
    ks = sorted({k for m in agents for k in m.pass_at_k})
    header = [
        "agent",
        "mean ± stderr",
        "95 % interval",
        "accuracy",
        *[f"pass@{k}" for k in ks],
        "flip rate",
        "errors",
        "tokens in / out",
        "new cost",
        "latency p50 / p95",
    ]
    rows = [
        [
            m.agent,
            f"{_figure(m.mean)} ± {_figure(m.stderr)}",
            f"{_figure(m.ci_low)} - {_figure(m.ci_high)}",
            _figure(m.accuracy),
            *[_figure(m.pass_at_k.get(k)) for k in ks],
            _figure(m.flip_rate) + (f" ({', '.join(m.flaky[:5])})" if m.flaky else ""),
            f"{m.errors} of {m.results}",
            f"{m.input_tokens} / {m.output_tokens}",
            "unknown (no prices)" if m.cost is None else f"${m.cost:.4f}",
            f"{_seconds(m.latency_p50)} / {_seconds(m.latency_p95)}",
        ]
        for m in agents
    ]
    table = "\n".join(
        [
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
            *["| " + " | ".join(row) + " |" for row in rows],
        ]
    )
    replayed = sum(m.cache_hits for m in agents)
    note = (
        "Scores are means over samples (each sample's epochs averaged first); the "
        f"interval is a bootstrap over samples. {replayed} answers were replayed from "
        "earlier runs: they cost nothing new and are left out of tokens and latency."
    )
    gate = (
        "**Gate passed.**"
        if verdict.passed
        else "**Gate failed** (exit code "
        f"{verdict.exit_code}):\n\n" + "\n".join(f"- {f}" for f in verdict.failures)
    )
    return f"# Evaluation {name}\n\n{table}\n\n{note}\n\n{gate}\n"


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"
