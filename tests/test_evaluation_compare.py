"""Comparisons: outcomes per sample, the baseline test, disagreements, charts, the gate."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import anyio
import pytest
from PIL import Image

from aiorch.core.errors import ConfigurationError
from aiorch.tasks.evaluation.baseline import aload_baseline
from aiorch.tasks.evaluation.charts import cost_chart, latency_chart, score_chart, shared_points
from aiorch.tasks.evaluation.compare import (
    Change,
    SampleOutcome,
    compare_to_baseline,
    disagreements,
    disagreements_markdown,
    match_baseline_agents,
    outcomes,
)
from aiorch.tasks.evaluation.gate import REGRESSED, SCORE_TOO_LOW, Gate, judge
from aiorch.tasks.evaluation.metrics import SampleResult, agent_metrics, bootstrap_interval
from aiorch.tasks.evaluation.run import Evaluation
from aiorch.tasks.evaluation.scoring import Answer, Score


def _result(agent: str, sample: str, epoch: int, value: float, error: bool = False) -> SampleResult:
    score = Score(
        scorer="includes",
        value=0.0 if error else value,
        passed=value >= 1.0 and not error,
        error="grader replied garbage" if error else None,
    )
    return SampleResult(
        sample_id=sample,
        epoch=epoch,
        agent=agent,
        answer=Answer(text="x", latency_seconds=0.1 * epoch),
        scores=[score],
    )


def _outcome(agent: str, sample: str, score: float) -> SampleOutcome:
    return SampleOutcome(agent=agent, sample_id=sample, score=score, pass_share=score)


def test_an_outcome_averages_the_scored_epochs_and_counts_the_rest_as_errors() -> None:
    results = [
        _result("a", "s1", 1, 1.0),
        _result("a", "s1", 2, 0.0),
        _result("a", "s1", 3, 1.0, error=True),
        _result("a", "s2", 1, 1.0, error=True),
    ]
    first, second = outcomes(results)
    assert (first.score, first.pass_share, first.epochs, first.errors) == (0.5, 0.5, 3, 1)
    assert first.passed is False  # half is not a majority
    assert (second.score, second.pass_share, second.errors) == (None, None, 1)
    assert second.passed is False


def test_the_baseline_test_is_a_paired_bootstrap_of_the_change() -> None:
    then = [_outcome("a", f"s{i}", 1.0) for i in range(3)]
    # One sample unchanged of three: a resample of only it has chance 1/27 (3.7 %), more
    # than the interval's 2.5 % tail, so the interval reaches 0; all three dropping has
    # chance 8/27, so it reaches -1 at the other end.
    one_kept = [_outcome("a", "s0", 1.0), _outcome("a", "s1", 0.0), _outcome("a", "s2", 0.0)]
    (kept,) = compare_to_baseline(one_kept, then, agents=["a"], seed=3)
    assert (kept.ci_low, kept.ci_high) == (-1.0, 0.0)
    assert kept.regressed is False
    assert kept.difference == pytest.approx(-2 / 3)
    assert (kept.baseline_mean, kept.shared_samples) == (1.0, 3)
    assert kept.mean == pytest.approx(1 / 3)
    assert (kept.ci_low, kept.ci_high) == bootstrap_interval([0.0, -1.0, -1.0], seed=3)
    all_dropped = [_outcome("a", f"s{i}", 0.0) for i in range(3)]
    (dropped,) = compare_to_baseline(all_dropped, then, agents=["a"])
    assert (dropped.ci_low, dropped.ci_high, dropped.regressed) == (-1.0, -1.0, True)
    (same,) = compare_to_baseline(then, then, agents=["a"])
    assert (same.difference, same.regressed) == (0.0, False)


def test_only_samples_both_runs_scored_are_compared() -> None:
    then = [_outcome("a", "s1", 1.0), _outcome("a", "s2", 1.0), _outcome("a", "old", 0.0)]
    errored = SampleOutcome(agent="a", sample_id="s2", score=None, pass_share=None, errors=1)
    now = [_outcome("a", "s1", 1.0), errored, _outcome("a", "new", 0.0)]
    (comparison,) = compare_to_baseline(now, then, agents=["a"])
    assert comparison.shared_samples == 1
    with pytest.raises(ConfigurationError, match="shares no sample"):
        compare_to_baseline([_outcome("a", "new", 0.0)], then, agents=["a"])


def test_agents_meet_their_namesake_or_the_only_baseline_agent() -> None:
    assert match_baseline_agents(["a", "b"], ["a", "b"]) == {"a": "a", "b": "b"}
    assert match_baseline_agents(["a", "b"], ["old"]) == {"a": "old", "b": "old"}
    with pytest.raises(ConfigurationError, match=r"agents \['b', 'x'\], none named 'a'"):
        match_baseline_agents(["a", "b"], ["b", "x"])


def test_disagreements_list_regressions_then_flips_then_improvements() -> None:
    then = [
        _outcome("a", "s1", 1.0),
        _outcome("b", "s1", 1.0),
        _outcome("a", "s2", 1.0),
        _outcome("b", "s2", 1.0),
        _outcome("a", "s3", 0.0),
        _outcome("b", "s3", 1.0),
        _outcome("a", "s4", 0.0),
        _outcome("b", "s4", 1.0),
    ]
    now = [
        _outcome("a", "s4", 1.0),  # improvement of a
        _outcome("b", "s4", 1.0),
        _outcome("a", "s3", 0.0),  # a still fails where b passes: a flip between them
        _outcome("b", "s3", 1.0),
        _outcome("a", "s2", 1.0),  # no change: not listed
        _outcome("b", "s2", 1.0),
        _outcome("a", "s1", 0.0),  # regression of a, and a flip against b
        _outcome("b", "s1", 1.0),
    ]
    found = disagreements(now, then, agents=["a", "b"])
    assert [(d.sample_id, d.change) for d in found] == [
        ("s1", Change.REGRESSION),
        ("s3", Change.FLIP),
        ("s4", Change.IMPROVEMENT),
    ]
    assert found[0].details == ["regression: a (1.00 → 0.00)", "flip: b pass, a fail"]
    assert found[0].scores == {"a": 0.0, "b": 1.0}
    assert found[0].baseline_scores == {"a": 1.0, "b": 1.0}
    # Without a baseline only the flips between agents remain.
    assert [d.sample_id for d in disagreements(now, agents=["a", "b"])] == ["s1", "s3"]


def test_the_disagreement_table_names_each_agent_then_and_now() -> None:
    then = [_outcome("a", "s1", 1.0)]
    now = [_outcome("a", "s1", 0.0)]
    long_input = "What | is " + "very " * 30 + "long?"
    table = disagreements_markdown(
        disagreements(now, then, agents=["a"]), agents=["a"], inputs={"s1": long_input}
    )
    header, rule, row = table.splitlines()
    assert header == "| sample | change | a | a (baseline) | input |"
    assert rule == "|---|---|---|---|---|"
    assert row.startswith("| s1 | regression: a (1.00 → 0.00) | 0.00 | 1.00 | What \\| is very")
    assert row.endswith("… |")
    assert "No sample flipped" in disagreements_markdown([], agents=["a"], inputs={})


def test_the_gate_fails_a_regression_with_its_own_code() -> None:
    results = [_result("a", f"s{i}", 1, 0.0) for i in range(4)]
    metrics = [agent_metrics("a", results)]
    then = [_outcome("a", f"s{i}", 1.0) for i in range(4)]
    against = compare_to_baseline(outcomes(results), then, agents=["a"])
    verdict = judge(Gate(), metrics, against)
    assert verdict.exit_code == REGRESSED
    assert verdict.failures == [
        "a: regressed against the baseline by 1.000 (95 % interval of the change "
        "-1.000 to -1.000, 4 samples)"
    ]
    both = judge(Gate(min_score=0.5), metrics, against)
    assert both.exit_code == SCORE_TOO_LOW
    assert len(both.failures) == 2
    assert judge(Gate(), metrics).passed


def _png_size(data_url: str) -> tuple[int, int]:
    prefix = "data:image/png;base64,"
    assert data_url.startswith(prefix)
    with Image.open(io.BytesIO(base64.b64decode(data_url.removeprefix(prefix)))) as image:
        return image.size


def test_the_charts_are_pngs_wide_enough_to_read() -> None:
    fast = agent_metrics("fast", [_result("fast", f"s{i}", 1, float(i % 2)) for i in range(6)])
    slow = agent_metrics("slow", [_result("slow", f"s{i}", 2, 1.0) for i in range(6)])
    for chart in (score_chart([fast, slow], {"fast": 0.9}), cost_chart([fast, slow])):
        width, height = _png_size(chart)
        assert width >= 600
        assert height >= 300
    latency = latency_chart({"fast": [0.1, 0.2, 0.4], "slow": [3.0, 3.1]})
    assert latency is not None
    assert _png_size(latency)[0] >= 600
    assert latency_chart({"fast": [], "slow": []}) is None  # every answer replayed


def test_a_baseline_file_is_read_and_bad_ones_are_named(tmp_path: Path) -> None:
    results = [_result("a", "s1", 1, 1.0), _result("a", "s2", 1, 0.0)]
    earlier = Evaluation(
        name="capitals",
        dataset="capitals.jsonl",
        dataset_fingerprint="f",
        epochs=1,
        agents=[agent_metrics("a", results)],
        results=results,
    )
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"evaluation": earlier.model_dump(mode="json")}))
    baseline = anyio.run(lambda: aload_baseline(str(report), evaluation="capitals"))
    assert baseline.agents == ["a"]
    assert [(o.sample_id, o.score) for o in baseline.outcomes] == [("s1", 1.0), ("s2", 0.0)]
    baseline.check_fits(["b"], ["s1"])
    with pytest.raises(ConfigurationError, match="shares no sample id"):
        baseline.check_fits(["a"], ["other"])
    missing = tmp_path / "missing.json"
    with pytest.raises(ConfigurationError, match="is neither a flow run id nor a file"):
        anyio.run(lambda: aload_baseline(str(missing), evaluation="capitals"))
    (tmp_path / "bad.json").write_text('{"evaluation": {"name": 3}}')
    with pytest.raises(ConfigurationError, match="is not an `aiorch eval run --output` file"):
        anyio.run(lambda: aload_baseline(str(tmp_path / "bad.json"), evaluation="capitals"))


def test_agents_at_one_point_of_the_cost_chart_share_one_label() -> None:
    points = shared_points(["echo", "slow", "costly"], [0.0, 0.0, 2.0], [0.5, 0.5, 0.5])
    assert points == {(0.0, 0.5): ["echo", "slow"], (2.0, 0.5): ["costly"]}
