"""Comparisons: agents against each other and against a baseline run, sample by sample.

An agent's **outcome** on a sample is its mean score over the epochs that could be
scored and the share of those epochs that passed; the sample *passes* for that agent
when more than half of them did. Two outcomes disagree when one passes and the other
does not.

Against a baseline (an earlier evaluation of the same dataset), each agent is tested on
the samples both runs scored: the per-sample difference (now minus then) gets a paired
percentile bootstrap 95 % interval, seeded. An agent has **regressed** when that whole
interval lies below zero: its drop is beyond what resampling the samples explains. A
single sample that fails now is listed as a regression in the disagreement table but
does not fail the gate by itself.

Example:
    ```python
    from aiorch.tasks.evaluation.compare import SampleOutcome, compare_to_baseline

    then = [SampleOutcome(agent="a", sample_id=str(i), score=1.0, pass_share=1.0) for i in range(8)]
    now = [o.model_copy(update={"score": 0.0, "pass_share": 0.0}) for o in then]
    print(compare_to_baseline(now, then, agents=["a"])[0].regressed)  # True
    ```
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from enum import StrEnum

from pydantic import ConfigDict, Field

from aiorch.core.errors import ConfigurationError
from aiorch.core.markdown import table_cell
from aiorch.core.models import AiorchModel
from aiorch.tasks.evaluation.metrics import SampleResult, bootstrap_interval

EXCERPT_CHARACTERS = 60


class SampleOutcome(AiorchModel):
    """One agent's figures on one sample, over its epochs: a row of the scores table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent: str
    sample_id: str
    score: float | None = Field(description="Mean over scored epochs; None if none was.")
    pass_share: float | None = Field(description="Share of scored epochs that passed.")
    epochs: int = Field(default=1, ge=1)
    errors: int = Field(default=0, ge=0, description="Epochs that could not be scored.")

    @property
    def passed(self) -> bool:
        """More than half of the scored epochs passed."""
        return self.pass_share is not None and self.pass_share > 0.5


class BaselineComparison(AiorchModel):
    """One agent against its baseline, over the samples both scored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent: str
    baseline_agent: str
    shared_samples: int
    baseline_mean: float | None
    mean: float | None
    difference: float | None = Field(description="Mean of (now - then) per sample.")
    ci_low: float | None
    ci_high: float | None
    regressed: bool = Field(description="The difference's whole interval is below zero.")


class Change(StrEnum):
    """How a sample's outcomes differ, in the order the disagreement table lists them."""

    REGRESSION = "regression"
    FLIP = "flip"
    IMPROVEMENT = "improvement"


class Disagreement(AiorchModel):
    """A sample whose outcomes differ between agents or against the baseline."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_id: str
    change: Change = Field(description="The most serious change on this sample.")
    details: list[str] = Field(description="Each change, naming the agents.")
    scores: dict[str, float | None] = Field(description="Agent to its score now.")
    baseline_scores: dict[str, float | None] = Field(
        default_factory=dict, description="Agent to its baseline's score on this sample."
    )


def outcomes(results: Sequence[SampleResult]) -> list[SampleOutcome]:
    """Each (agent, sample)'s outcome over its epochs, in the results' order."""
    grouped: dict[tuple[str, str], list[SampleResult]] = defaultdict(list)
    for result in results:
        grouped[(result.agent, result.sample_id)].append(result)
    figures = []
    for (agent, sample_id), runs in grouped.items():
        scored = [run for run in runs if not run.errored]
        figures.append(
            SampleOutcome(
                agent=agent,
                sample_id=sample_id,
                score=sum(r.value for r in scored) / len(scored) if scored else None,
                pass_share=sum(r.passed for r in scored) / len(scored) if scored else None,
                epochs=len(runs),
                errors=len(runs) - len(scored),
            )
        )
    return figures


def match_baseline_agents(agents: Sequence[str], baseline: Sequence[str]) -> dict[str, str]:
    """Which baseline agent each agent is held against: its namesake, else the only one.

    Raises:
        ConfigurationError: an agent has no namesake and the baseline has several agents.
    """
    known = list(dict.fromkeys(baseline))
    matched: dict[str, str] = {}
    for agent in agents:
        if agent in known:
            matched[agent] = agent
        elif len(known) == 1:
            matched[agent] = known[0]
        else:
            raise ConfigurationError(
                f"baseline: it evaluated agents {known}, none named {agent!r}; compare "
                "with a baseline of that agent, or of a single agent (it serves every agent)"
            )
    return matched


def compare_to_baseline(
    current: Sequence[SampleOutcome],
    baseline: Sequence[SampleOutcome],
    *,
    agents: Sequence[str],
    seed: int = 0,
) -> list[BaselineComparison]:
    """Each of ``agents`` against its baseline agent (see :func:`match_baseline_agents`).

    Raises:
        ConfigurationError: the agents cannot be matched, or the runs share no sample.
    """
    matched = match_baseline_agents(agents, [o.agent for o in baseline])
    now = _by_agent(current)
    then = _by_agent(baseline)
    comparisons = []
    for agent in agents:
        before = then[matched[agent]]
        after = now.get(agent, {})
        shared = sorted(
            sample
            for sample in after.keys() & before.keys()
            if after[sample].score is not None and before[sample].score is not None
        )
        if not after.keys() & before.keys():
            raise ConfigurationError(
                f"baseline: it shares no sample with this evaluation of {agent}; a baseline "
                "must be an earlier run on the same dataset (sample ids are matched)"
            )
        differences = [_score(after[s]) - _score(before[s]) for s in shared]
        interval = bootstrap_interval(differences, seed=seed)
        comparisons.append(
            BaselineComparison(
                agent=agent,
                baseline_agent=matched[agent],
                shared_samples=len(shared),
                baseline_mean=_mean([_score(before[s]) for s in shared]),
                mean=_mean([_score(after[s]) for s in shared]),
                difference=_mean(differences),
                ci_low=interval[0] if interval else None,
                ci_high=interval[1] if interval else None,
                regressed=interval is not None and interval[1] < 0,
            )
        )
    return comparisons


def disagreements(
    current: Sequence[SampleOutcome],
    baseline: Sequence[SampleOutcome] = (),
    *,
    agents: Sequence[str],
) -> list[Disagreement]:
    """Samples that flipped between agents or against the baseline, regressions first."""
    now = _by_agent(current)
    then = _by_agent(baseline)
    matched = match_baseline_agents(agents, list(then)) if then else {}
    samples = sorted({o.sample_id for o in current})
    found = []
    for sample in samples:
        mine = {agent: now.get(agent, {}).get(sample) for agent in agents}
        details: list[tuple[Change, str]] = []
        for agent, outcome in mine.items():
            earlier = then.get(matched.get(agent, ""), {}).get(sample)
            if outcome is None or earlier is None or earlier.passed == outcome.passed:
                continue
            change = Change.REGRESSION if earlier.passed else Change.IMPROVEMENT
            details.append((change, f"{change.value}: {agent} ({_arrow(earlier, outcome)})"))
        passing = sorted(agent for agent, o in mine.items() if o is not None and o.passed)
        failing = sorted(agent for agent, o in mine.items() if o is not None and not o.passed)
        if passing and failing:
            text = f"flip: {', '.join(passing)} pass, {', '.join(failing)} fail"
            details.append((Change.FLIP, text))
        if not details:
            continue
        order = list(Change)
        details.sort(key=lambda item: order.index(item[0]))
        found.append(
            Disagreement(
                sample_id=sample,
                change=details[0][0],
                details=[text for _, text in details],
                scores={agent: o.score if o else None for agent, o in mine.items()},
                baseline_scores={
                    agent: _baseline_score(then, matched[agent], sample) for agent in matched
                },
            )
        )
    order = list(Change)
    return sorted(found, key=lambda d: (order.index(d.change), d.sample_id))


def disagreements_markdown(
    found: Sequence[Disagreement], *, agents: Sequence[str], inputs: Mapping[str, str]
) -> str:
    """The disagreement table; ``inputs`` maps sample ids to their prompts (excerpted)."""
    if not found:
        return "No sample flipped between agents or against the baseline."
    with_baseline = any(d.baseline_scores for d in found)
    header = [
        "sample",
        "change",
        *agents,
        *([f"{agent} (baseline)" for agent in agents] if with_baseline else []),
        "input",
    ]
    rows = [
        [
            d.sample_id,
            "; ".join(d.details),
            *[_figure(d.scores.get(agent)) for agent in agents],
            *([_figure(d.baseline_scores.get(agent)) for agent in agents] if with_baseline else []),
            _excerpt(inputs.get(d.sample_id, "")),
        ]
        for d in found
    ]
    return "\n".join(
        [
            "| " + " | ".join(table_cell(cell) for cell in header) + " |",
            "|" + "---|" * len(header),
            *["| " + " | ".join(table_cell(cell) for cell in row) + " |" for row in rows],
        ]
    )


def baseline_markdown(comparisons: Sequence[BaselineComparison], source: str) -> str:
    """The baseline test's table: each agent's change and its interval."""
    header = (
        "| agent | baseline agent | shared samples | then | now | change | 95 % interval "
        "| verdict |"
    )
    rows = [
        f"| {table_cell(c.agent)} | {table_cell(c.baseline_agent)} | {c.shared_samples} | "
        f"{_figure(c.baseline_mean)} | {_figure(c.mean)} | {_signed(c.difference)} | "
        f"{_signed(c.ci_low)} to {_signed(c.ci_high)} | "
        f"{'**regressed**' if c.regressed else 'no regression'} |"
        for c in comparisons
    ]
    note = (
        f"Baseline: {table_cell(source)}. The interval is a paired bootstrap of the "
        "per-sample change; an agent regressed when all of it is below zero."
    )
    return "\n".join([header, "|" + "---|" * 8, *rows, "", note])


def _by_agent(figures: Sequence[SampleOutcome]) -> dict[str, dict[str, SampleOutcome]]:
    grouped: dict[str, dict[str, SampleOutcome]] = defaultdict(dict)
    for outcome in figures:
        grouped[outcome.agent][outcome.sample_id] = outcome
    return grouped


def _baseline_score(
    then: Mapping[str, Mapping[str, SampleOutcome]], agent: str, sample: str
) -> float | None:
    earlier = then.get(agent, {}).get(sample)
    return earlier.score if earlier else None


def _score(outcome: SampleOutcome) -> float:
    return outcome.score or 0.0


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _arrow(before: SampleOutcome, after: SampleOutcome) -> str:
    return f"{_figure(before.score)} → {_figure(after.score)}"


def _figure(value: float | None) -> str:
    return "error" if value is None else f"{value:.2f}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) <= EXCERPT_CHARACTERS:
        return flat
    return flat[: EXCERPT_CHARACTERS - 1] + "…"
