"""Evaluation datasets, scorers and metrics, checked against hand-computed values."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiorch.core.errors import ConfigurationError
from aiorch.tasks.agents.usage import TokenUsage
from aiorch.tasks.evaluation.checks import ScorerSet
from aiorch.tasks.evaluation.datasets import DatasetError, load_dataset
from aiorch.tasks.evaluation.metrics import (
    SampleResult,
    agent_metrics,
    bootstrap_interval,
    pass_at_k,
    standard_error,
)
from aiorch.tasks.evaluation.samples import Check, Sample
from aiorch.tasks.evaluation.scoring import Answer, Score, ToolCallRecord, scorer

DATA = Path(__file__).parent / "data" / "eval"


def _score(check: dict[str, Any], text: str, target: str | None = None, **answer: Any) -> Score:
    sample = Sample(id="s", input="q", target=target)
    parsed = Check.model_validate(check)
    found = ScorerSet.installed().resolve(parsed.type, "test")
    return anyio.run(found.score, sample, Answer(text=text, **answer), parsed)


# Datasets


def test_the_three_formats_load_with_their_ids_targets_and_checks() -> None:
    jsonl = load_dataset(DATA / "capitals.jsonl")
    assert [s.id for s in jsonl.samples] == ["france", "japan", "kenya", "arithmetic", "json-city"]
    assert jsonl.samples[2].metadata == {"continent": "Africa"}
    assert jsonl.samples[4].prompt().startswith("system: You answer in JSON.\nuser: ")
    csv = load_dataset(DATA / "capitals.csv")
    assert [(s.id, s.target, s.metadata) for s in csv.samples] == [
        ("france", "Paris", {"continent": "Europe"}),
        ("peru", "Lima", {"continent": "South America"}),
    ]
    yaml = load_dataset(DATA / "capitals.yaml")
    france, canada = yaml.samples
    assert france.id == "France"
    assert france.input == "What is the capital of France? Answer with the city only."
    assert [c.type for c in france.checks] == ["includes", "max_latency"]
    assert france.checks[0].options == {"ignore_case": True}
    assert france.checks[1].options == {"seconds": 30.0}  # promptfoo's milliseconds
    assert canada.checks[0].type == "exact"
    assert france.metadata["vars"] == {"country": "France"}


def test_a_sample_without_an_id_gets_one_from_its_content(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"input": "a", "target": "x"}\n{"input": "b"}\n')
    first = [s.id for s in load_dataset(path).samples]
    path.write_text('{"input": "new"}\n{"input": "b"}\n{"input": "a", "target": "x"}\n')
    second = [s.id for s in load_dataset(path).samples]
    assert first[0] == second[2]
    assert first[1] == second[1]
    assert first[0].startswith("s-")
    assert first[0] != first[1]


def test_the_fingerprint_changes_with_any_sample(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": "a", "input": "a", "target": "x"}\n')
    before = load_dataset(path).fingerprint
    path.write_text('{"id": "a", "input": "a", "target": "y"}\n')
    assert load_dataset(path).fingerprint != before


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("d.jsonl", '{"id": "a", "input": "x"}\n{"id": "b", "input": 3}\n', r"d\.jsonl:2: input"),
        ("d.jsonl", '{"id": "a", "input": "x"}\n\n{oops}\n', r"d\.jsonl:3: not JSON"),
        (
            "d.jsonl",
            '{"id": "a", "input": "x"}\n{"id": "a", "input": "y"}\n',
            r":2: id: 'a' is already the id of line 1",
        ),
        ("d.jsonl", '{"id": "a", "input": "x", "colour": 1}\n', r":1: colour: Extra inputs"),
        (
            "d.jsonl",
            '{"id": "a", "input": "x", "checks": [{"type": "include"}]}\n',
            r":1: checks\.0\.type: no scorer 'include'; did you mean 'includes'\?",
        ),
        (
            "d.jsonl",
            '{"id": "a", "input": "x", "checks": [{"type": "regex", "value": "("}]}\n',
            r":1: checks\.0: check 'regex': value: Value error, not a regular expression",
        ),
        (
            "d.jsonl",
            '{"id": "a", "input": "x", "checks": [{"type": "numeric", "tolerence": 1}]}\n',
            r":1: checks\.0: check 'numeric': tolerence: Extra inputs",
        ),
        ("d.csv", "id,question\na,b\n", r"d\.csv:1: the header has no 'input' column"),
        ("d.csv", "id,input\na,b\nc,d,e\n", r"d\.csv:3: more fields than the header"),
        ("d.yaml", "- id: a\n  input: x\n- id: b\n  input: [1]\n", r"d\.yaml:3: input"),
        (
            "d.yaml",
            "prompt: 'Hi {{name}}'\ntests:\n  - vars: {other: 1}\n",
            r"d\.yaml:3: vars\.name: the prompt uses \{\{name\}\}",
        ),
        (
            "d.yaml",
            "prompt: 'Hi'\ntests:\n  - vars: {}\n    asert: []\n",
            r"d\.yaml:3: asert: not a test-case field",
        ),
        ("d.yaml", "a: [\n", r"d\.yaml:2: not YAML"),
        ("d.txt", "x", r"d\.txt: a dataset is a \.jsonl, \.csv or \.yaml file"),
        ("d.jsonl", "\n", r"d\.jsonl: no samples"),
    ],
)
def test_a_bad_record_names_the_file_line_and_field(
    tmp_path: Path, name: str, content: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=expected):
        load_dataset(path)


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"missing\.jsonl: no such file"):
        load_dataset(tmp_path / "missing.jsonl")


def test_a_bad_value_is_never_quoted(tmp_path: Path) -> None:
    canary = "sk-canary-0123456789"
    path = tmp_path / "d.jsonl"
    path.write_text(f'{{"id": "a", "input": {{"key": "{canary}"}}}}\n')
    with pytest.raises(DatasetError) as raised:
        load_dataset(path)
    assert canary not in str(raised.value)


# Scorers


@pytest.mark.parametrize(
    ("check", "text", "target", "passed"),
    [
        ({"type": "exact"}, "  Paris \n", "Paris", True),
        ({"type": "exact"}, "paris", "Paris", False),
        ({"type": "exact", "ignore_case": True}, "paris", "Paris", True),
        ({"type": "exact", "value": ["Rome", "Roma"]}, "Roma", None, True),
        ({"type": "includes"}, "It is Paris.", "Paris", True),
        ({"type": "includes"}, "It is Lyon.", "Paris", False),
        ({"type": "regex", "value": r"^\d{3}$"}, "123", None, True),
        ({"type": "regex", "value": r"^\d{3}$"}, "1234", None, False),
        ({"type": "json_schema"}, '{"city": "Rome"}', None, True),
        ({"type": "json_schema"}, "Rome", None, False),
        (
            {"type": "json_schema", "value": {"required": ["city"]}},
            '```json\n{"city": 1}\n```',
            None,
            True,
        ),
        ({"type": "json_schema", "value": {"required": ["city"]}}, '{"town": 1}', None, False),
        ({"type": "numeric"}, "It is 51.", "51", True),
        ({"type": "numeric", "tolerance": 0.5}, "about 3.4", "3", True),
        ({"type": "numeric", "tolerance": 0.1, "relative": True}, "1,050 people", "1000", True),
        ({"type": "numeric"}, "3,5", "35", False),
        ({"type": "numeric"}, "no idea", "51", False),
        ({"type": "max_latency", "seconds": 2}, "x", None, True),
    ],
)
def test_each_scorer_passes_and_fails_as_written(
    check: dict[str, Any], text: str, target: str | None, passed: bool
) -> None:
    score = _score(check, text, target, latency_seconds=1.5)
    assert score.error is None
    assert score.passed is passed
    assert score.value == float(passed)


def test_tool_call_matches_name_and_arguments() -> None:
    calls = [ToolCallRecord(name="weather", arguments={"city": "Oslo", "units": "metric"})]
    check = {"type": "tool_call", "value": "weather", "arguments": {"city": "Oslo"}}
    assert _score(check, "", tool_calls=calls).passed
    wrong = _score({**check, "arguments": {"city": "Rome"}}, "", tool_calls=calls)
    assert not wrong.passed
    assert "never with" in wrong.reason
    missing = _score({"type": "tool_call", "value": "search"}, "", tool_calls=calls)
    assert missing.reason == "did not call search (called weather)"


def test_cost_counts_new_spend_and_says_when_no_price_is_known() -> None:
    check = {"type": "max_cost", "dollars": 0.01}
    assert _score(check, "", estimated_cost=0.002).passed
    assert not _score(check, "", estimated_cost=0.02).passed
    unknown = _score(check, "")
    assert unknown.error is not None
    assert "prices" in unknown.error


def test_a_check_against_a_missing_target_is_an_error_score_not_a_crash() -> None:
    score = _score({"type": "exact"}, "Paris", None)
    assert score.error is not None
    assert "has none" in score.error
    assert (score.value, score.passed) == (0.0, False)


def test_custom_scorers_are_plain_functions_and_bad_returns_are_isolated() -> None:
    @scorer("short", threshold=0.5)
    def short(sample: Sample, answer: Answer, options: Any) -> float:
        return 1.0 if len(answer.text) < 5 else 0.4

    @scorer("broken")
    def broken(sample: Sample, answer: Answer, options: Any) -> float:
        return 7.0

    @scorer("raises")
    async def raises(sample: Sample, answer: Answer, options: Any) -> bool:
        raise RuntimeError("grader said: ???")

    scorers = ScorerSet.installed([short, broken, raises])
    sample = Sample(id="s", input="q")

    def run(name: str, text: str) -> Score:
        return anyio.run(
            scorers.resolve(name, "t").score, sample, Answer(text=text), Check(type=name)
        )

    assert run("short", "ok").passed
    assert not run("short", "too long").passed
    assert run("short", "too long").value == 0.4
    assert "a score is a number from 0 to 1" in (run("broken", "x").error or "")
    assert run("raises", "x").error == "RuntimeError: grader said: ???"


# Metrics


def test_standard_error_and_pass_at_k_match_hand_computed_values() -> None:
    # mean 0.75; sample variance ((3 * 0.25**2) + 0.75**2) / 3 = 0.25; se = 0.5 / 2
    assert standard_error([1.0, 0.0, 1.0, 1.0]) == pytest.approx(0.25)
    assert standard_error([1.0]) is None
    assert pass_at_k(5, 2, 1) == pytest.approx(1 - 3 / 5)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)
    assert pass_at_k(5, 4, 2) == 1.0
    assert pass_at_k(3, 0, 3) == 0.0
    with pytest.raises(ConfigurationError, match="k=4 must be between 1 and the epochs"):
        pass_at_k(3, 1, 4)


def test_the_bootstrap_interval_is_repeatable_and_close_to_the_normal_one() -> None:
    values = [1.0, 0.0] * 50
    first = bootstrap_interval(values, seed=3)
    assert first == bootstrap_interval(values, seed=3)
    assert first != bootstrap_interval(values, seed=4)
    assert first is not None
    # Normal approximation: 0.5 +- 1.96 * 0.5 / sqrt(100) = 0.402 .. 0.598
    assert first[0] == pytest.approx(0.402, abs=0.02)
    assert first[1] == pytest.approx(0.598, abs=0.02)
    assert bootstrap_interval([0.7, 0.7, 0.7]) == pytest.approx((0.7, 0.7))
    assert bootstrap_interval([]) is None


def _result(sample: str, epoch: int, passed: bool, **answer: Any) -> SampleResult:
    return SampleResult(
        sample_id=sample,
        epoch=epoch,
        agent="a",
        answer=Answer(text="x", **answer),
        scores=[Score(scorer="exact", value=float(passed), passed=passed)],
    )


def test_agent_metrics_over_epochs_flips_errors_and_cache_hits() -> None:
    usage = TokenUsage(input_tokens=10, output_tokens=5, source="provider")
    results = [
        _result("a", 1, True, usage=usage, estimated_cost=0.001, latency_seconds=1.0),
        _result("a", 2, True, usage=usage, estimated_cost=0.0, latency_seconds=0.0, cache_hit=True),
        _result("b", 1, True, usage=usage, estimated_cost=0.001, latency_seconds=3.0),
        _result("b", 2, False, usage=usage, estimated_cost=0.001, latency_seconds=2.0),
        _result("c", 1, False, usage=usage, estimated_cost=0.001, latency_seconds=4.0),
        _result("c", 2, False, usage=usage, estimated_cost=0.001, latency_seconds=5.0),
        SampleResult(sample_id="d", epoch=1, agent="a", error="provider-error: 503"),
    ]
    metrics = agent_metrics("a", results, ks=(1, 2))
    # Per sample: a 1.0, b 0.5, c 0.0 (d errored, left out): mean 0.5, se 0.5 / sqrt(3)
    assert metrics.mean == pytest.approx(0.5)
    assert metrics.stderr == pytest.approx(0.5 / math.sqrt(3))
    assert metrics.ci_low is not None
    assert metrics.ci_high is not None
    assert metrics.ci_low <= 0.5 <= metrics.ci_high
    assert metrics.accuracy == pytest.approx(3 / 6)
    assert metrics.pass_at_k == {1: pytest.approx(0.5), 2: pytest.approx(2 / 3)}
    assert metrics.flip_rate == pytest.approx(1 / 3)
    assert metrics.flaky == ["b"]
    assert (metrics.samples, metrics.results, metrics.errors, metrics.epochs) == (3, 7, 1, 2)
    assert (metrics.input_tokens, metrics.output_tokens, metrics.cache_hits) == (50, 25, 1)
    assert metrics.cost == pytest.approx(0.005)
    # Latencies of the five answers that called the model: 1, 2, 3, 4, 5
    assert metrics.latency_p50 == 3.0
    assert metrics.latency_p95 == pytest.approx(4.8)
