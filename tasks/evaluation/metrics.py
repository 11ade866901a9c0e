"""Metrics over an evaluation's results, per agent.

The unit of the score statistics is the sample: each sample's score is first averaged
over its epochs, so repeating epochs narrows the interval only as much as it should (the
epochs of one sample are not independent draws). Results whose scoring failed (an agent
error, a grader's unusable reply) are counted as ``errors`` and left out of the score,
never counted as zeros in silence.

- ``mean`` with its standard error (sample standard deviation / sqrt(n)) and a
  percentile bootstrap 95 % interval over samples, seeded so a run is repeatable;
- ``accuracy``: the share of (sample, epoch) results that passed every check;
- ``pass_at_k``: the unbiased estimator of Chen et al. (2021),
  ``1 - C(n - c, k) / C(n, k)`` per sample with ``n`` epochs and ``c`` passes, averaged;
- ``flip_rate``: the share of samples that passed in some epochs and failed in others
  (the flaky ones are listed);
- tokens, cost and latency (p50, p95, linear interpolation) from the answers' usage; a
  replayed (cached) answer costs nothing new, spends no new tokens, is left out of the
  latencies (a replay says nothing of the model's speed) and is counted in
  ``cache_hits``.

Example:
    ```python
    from aiorch.tasks.evaluation.metrics import bootstrap_interval, pass_at_k

    print(pass_at_k(n=5, c=2, k=1))  # 0.4
    print(bootstrap_interval([1.0, 0.0, 1.0, 1.0], seed=7))
    ```
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from pydantic import ConfigDict, Field

from aiorch.core.errors import ConfigurationError
from aiorch.core.models import AiorchModel
from aiorch.tasks.evaluation.scoring import Answer, Score

BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95


class SampleResult(AiorchModel):
    """One (sample, epoch, agent): the answer and its scores, or why there is none."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_id: str
    epoch: int = Field(ge=1)
    agent: str
    answer: Answer | None = None
    scores: list[Score] = Field(default_factory=list)
    weights: list[float] = Field(default_factory=list, description="One per score.")
    error: str | None = Field(default=None, description="The agent call failed: why.")

    @property
    def errored(self) -> bool:
        """The agent failed or a check could not be made."""
        return self.error is not None or any(score.error for score in self.scores)

    @property
    def value(self) -> float:
        """The weighted mean of the checks' values."""
        weights = self.weights or [1.0] * len(self.scores)
        total = sum(weights)
        if not self.scores or total == 0:
            return 0.0
        return sum(s.value * w for s, w in zip(self.scores, weights, strict=True)) / total

    @property
    def passed(self) -> bool:
        """Every check passed."""
        return not self.errored and all(score.passed for score in self.scores)


class AgentMetrics(AiorchModel):
    """One agent's figures over a dataset."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent: str
    samples: int = Field(description="Samples with at least one scored result.")
    results: int = Field(description="(sample, epoch) results, errors included.")
    epochs: int
    errors: int
    mean: float | None
    stderr: float | None = Field(description="None with fewer than two samples.")
    ci_low: float | None
    ci_high: float | None
    accuracy: float | None
    pass_at_k: dict[int, float] = Field(default_factory=dict)
    flip_rate: float | None
    flaky: list[str] = Field(default_factory=list, description="Samples that flipped.")
    input_tokens: int
    output_tokens: int
    cost: float | None = Field(description="New cost; None when some answer had no price.")
    cache_hits: int
    latency_p50: float | None
    latency_p95: float | None


def standard_error(values: Sequence[float]) -> float | None:
    """Sample standard deviation over sqrt(n); None below two values."""
    if len(values) < 2:
        return None
    return float(np.std(values, ddof=1) / math.sqrt(len(values)))


def bootstrap_interval(
    values: Sequence[float],
    *,
    seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = CONFIDENCE,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of ``values``; None without values."""
    if not values:
        return None
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def pass_at_k(n: int, c: int, k: int) -> float:
    """The chance that at least one of ``k`` of ``n`` tries passes, ``c`` having passed.

    Raises:
        ConfigurationError: ``k`` is not between 1 and ``n``, or ``c`` exceeds ``n``.
    """
    if not 1 <= k <= n or not 0 <= c <= n:
        raise ConfigurationError(
            f"pass@k: k={k} must be between 1 and the epochs ({n}); run more epochs or "
            "ask for a smaller k"
        )
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def percentile(values: Sequence[float], share: float) -> float | None:
    """The ``share`` (0-100) percentile, linearly interpolated; None without values."""
    return float(np.percentile(values, share)) if values else None


def agent_metrics(
    agent: str, results: Sequence[SampleResult], *, ks: Sequence[int] = (1,), seed: int = 0
) -> AgentMetrics:
    """The figures of ``results`` (all of one agent)."""
    by_sample: dict[str, list[SampleResult]] = defaultdict(list)
    for result in results:
        by_sample[result.sample_id].append(result)
    scored = {
        sample: [r for r in runs if not r.errored]
        for sample, runs in by_sample.items()
        if any(not r.errored for r in runs)
    }
    per_sample = [sum(r.value for r in runs) / len(runs) for runs in scored.values()]
    interval = bootstrap_interval(per_sample, seed=seed)
    epochs = max((r.epoch for r in results), default=0)
    attempts = [r for runs in scored.values() for r in runs]
    flaky = sorted(sample for sample, runs in scored.items() if len({r.passed for r in runs}) > 1)
    answers = [r.answer for r in results if r.answer is not None]
    costs = [a.estimated_cost for a in answers]
    latencies = [a.latency_seconds for a in answers if not a.cache_hit]
    return AgentMetrics(
        agent=agent,
        samples=len(scored),
        results=len(results),
        epochs=epochs,
        errors=sum(1 for r in results if r.errored),
        mean=float(np.mean(per_sample)) if per_sample else None,
        stderr=standard_error(per_sample),
        ci_low=interval[0] if interval else None,
        ci_high=interval[1] if interval else None,
        accuracy=sum(r.passed for r in attempts) / len(attempts) if attempts else None,
        pass_at_k=_pass_at_ks(scored, ks),
        flip_rate=len(flaky) / len(scored) if scored else None,
        flaky=flaky,
        input_tokens=sum(a.usage.input_tokens for a in answers if not a.cache_hit),
        output_tokens=sum(a.usage.output_tokens for a in answers if not a.cache_hit),
        cost=None if any(c is None for c in costs) else float(sum(c or 0.0 for c in costs)),
        cache_hits=sum(1 for a in answers if a.cache_hit),
        latency_p50=percentile(latencies, 50),
        latency_p95=percentile(latencies, 95),
    )


def _pass_at_ks(scored: dict[str, list[SampleResult]], ks: Sequence[int]) -> dict[int, float]:
    figures: dict[int, float] = {}
    for k in ks:
        usable = [runs for runs in scored.values() if len(runs) >= k]
        if usable:
            figures[k] = sum(
                pass_at_k(len(runs), sum(r.passed for r in runs), k) for runs in usable
            ) / len(usable)
    return figures
