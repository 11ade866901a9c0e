"""The built-in scorers, and the set of scorers a dataset's checks may name.

| check ``type`` | passes when | options |
|---|---|---|
| ``exact`` | the answer is the target (or ``value``), whitespace aside | ``ignore_case`` |
| ``includes`` | the answer contains the target (or ``value``) | ``ignore_case`` |
| ``regex`` | ``value`` (a regular expression) matches the answer | ``ignore_case`` |
| ``json_schema`` | the answer (or its structured output) is JSON valid against ``value`` | |
| ``numeric`` | its first number is within ``tolerance`` of it | ``tolerance``, ``relative`` |
| ``tool_call`` | it called tool ``value`` with ``arguments`` among its own | ``arguments`` |
| ``max_cost`` | the answer's new cost is at most ``dollars`` | ``dollars`` |
| ``max_latency`` | the answer took at most ``seconds`` | ``seconds`` |
| ``rubric`` | most grader agents judge it meets ``value`` (:mod:`.graders`) | ``graders`` |

Further scorers come from the ``aiorch.scorers`` entry point (each a
:class:`~aiorch.tasks.evaluation.scoring.Scorer`) or are passed to an evaluation.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any

from jsonschema import SchemaError, validators
from pydantic import ConfigDict, Field, field_validator

from aiorch.core.errors import ConfigurationError
from aiorch.core.models import AiorchModel
from aiorch.tasks.evaluation.graders import rubric
from aiorch.tasks.evaluation.samples import Check, Sample
from aiorch.tasks.evaluation.scoring import Answer, Score, Scorer, scorer

ENTRY_POINT_GROUP = "aiorch.scorers"
# Thousands grouped by commas (1,234.5), else plain; "3,5" is two numbers, not 35.
NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")


class _Options(AiorchModel):
    model_config = ConfigDict(extra="forbid")


class TextOptions(_Options):
    """``value``: the text to compare with (the sample's target when left out)."""

    value: str | list[str] | None = None
    ignore_case: bool = False


class RegexOptions(_Options):
    """``value``: a Python regular expression searched for in the answer."""

    value: str
    ignore_case: bool = False

    @field_validator("value")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"not a regular expression ({error})") from None
        return value


class SchemaOptions(_Options):
    """``value``: the JSON Schema the answer must match (any JSON when left out)."""

    value: dict[str, Any] | None = None

    @field_validator("value")
    @classmethod
    def _is_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                validators.validator_for(value).check_schema(value)
            except SchemaError as error:
                raise ValueError(f"not a JSON Schema ({error.message})") from None
        return value


class NumericOptions(_Options):
    """``value``: the expected number (the target when left out)."""

    value: float | None = None
    tolerance: float = Field(default=0.0, ge=0.0)
    relative: bool = Field(default=False, description="tolerance as a share of the value")


class ToolCallOptions(_Options):
    """``value``: the tool's name; ``arguments``: values its arguments must have."""

    value: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)


class CostOptions(_Options):
    """``dollars``: the most an answer may cost (new spend; replays cost nothing)."""

    dollars: float = Field(ge=0.0)
    value: None = None


class LatencyOptions(_Options):
    """``seconds``: the longest an answer may take."""

    seconds: float = Field(gt=0.0)
    value: None = None


def _verdict(name: str, passed: bool, reason: str) -> Score:
    """A pass-or-fail score: 1 or 0."""
    return Score(scorer=name, value=float(passed), passed=passed, reason=reason)


def _expected(sample: Sample, value: str | list[str] | None) -> list[str]:
    if value is None:
        if not sample.targets():
            raise ConfigurationError(
                f"sample {sample.id}: the check compares with the target and the sample "
                "has none; give the sample a target or the check a value"
            )
        return sample.targets()
    return [value] if isinstance(value, str) else value


def _folded(text: str, ignore_case: bool) -> str:
    text = " ".join(text.split())
    return text.casefold() if ignore_case else text


@scorer("exact", options=TextOptions)
def exact(sample: Sample, answer: Answer, options: TextOptions) -> Score:
    """The answer is the target, apart from surrounding and repeated whitespace."""
    got = _folded(answer.text, options.ignore_case)
    expected = _expected(sample, options.value)
    passed = any(got == _folded(want, options.ignore_case) for want in expected)
    return _verdict("exact", passed, "equals the target" if passed else f"is not {expected[0]!r}")


@scorer("includes", options=TextOptions)
def includes(sample: Sample, answer: Answer, options: TextOptions) -> Score:
    """The answer contains the target somewhere."""
    got = _folded(answer.text, options.ignore_case)
    expected = _expected(sample, options.value)
    found = [want for want in expected if _folded(want, options.ignore_case) in got]
    reason = f"contains {found[0]!r}" if found else f"does not contain {expected[0]!r}"
    return _verdict("includes", bool(found), reason)


@scorer("regex", options=RegexOptions)
def regex(sample: Sample, answer: Answer, options: RegexOptions) -> Score:
    """``value`` matches somewhere in the answer."""
    flags = re.IGNORECASE if options.ignore_case else 0
    match = re.search(options.value, answer.text, flags)
    reason = f"matches at {match.start()}" if match else f"no match for {options.value!r}"
    return _verdict("regex", match is not None, reason)


@scorer("json_schema", options=SchemaOptions)
def json_schema(sample: Sample, answer: Answer, options: SchemaOptions) -> Score:
    """The answer is JSON (its structured output, else its text) valid against ``value``."""
    data = answer.output
    if data is None:
        try:
            data = json.loads(_without_fence(answer.text))
        except json.JSONDecodeError as error:
            return Score(
                scorer="json_schema", value=0.0, passed=False, reason=f"not JSON: {error.msg}"
            )
    if options.value is None:
        return Score(scorer="json_schema", value=1.0, passed=True, reason="is JSON")
    problems = sorted(
        validators.validator_for(options.value)(options.value).iter_errors(data),
        key=lambda problem: list(problem.absolute_path),
    )
    if not problems:
        return Score(scorer="json_schema", value=1.0, passed=True, reason="matches the schema")
    where = "/".join(map(str, problems[0].absolute_path)) or "the root"
    return Score(
        scorer="json_schema",
        value=0.0,
        passed=False,
        reason=f"{where}: {problems[0].validator} failed",
    )


def _without_fence(text: str) -> str:
    # Models often wrap JSON in a markdown code fence.
    fenced = re.fullmatch(r"\s*```[A-Za-z]*\n(.*?)\n```\s*", text, re.DOTALL)
    return fenced.group(1) if fenced else text


@scorer("numeric", options=NumericOptions)
def numeric(sample: Sample, answer: Answer, options: NumericOptions) -> Score:
    """The first number in the answer is within ``tolerance`` of the expected one."""
    if options.value is not None:
        expected = options.value
    else:
        targets = _expected(sample, None)
        try:
            expected = float(targets[0])
        except ValueError:
            raise ConfigurationError(
                f"sample {sample.id}: target: {targets[0]!r} is not a number; the numeric "
                "check needs a numeric target or value"
            ) from None
    found = NUMBER.search(answer.text)
    if found is None:
        return Score(scorer="numeric", value=0.0, passed=False, reason="no number in the answer")
    got = float(found.group().replace(",", ""))
    allowed = options.tolerance * abs(expected) if options.relative else options.tolerance
    passed = abs(got - expected) <= allowed
    return _verdict("numeric", passed, f"{got:g} vs {expected:g} (allowed difference {allowed:g})")


@scorer("tool_call", options=ToolCallOptions)
def tool_call(sample: Sample, answer: Answer, options: ToolCallOptions) -> Score:
    """The agent called tool ``value`` with arguments holding ``arguments``."""
    calls = [call for call in answer.tool_calls if call.name == options.value]
    for call in calls:
        if all(call.arguments.get(k) == v for k, v in options.arguments.items()):
            return Score(scorer="tool_call", value=1.0, passed=True, reason=f"called {call.name}")
    if calls:
        reason = f"called {options.value}, never with {json.dumps(options.arguments)}"
    else:
        made = sorted({call.name for call in answer.tool_calls}) or ["no tool"]
        reason = f"did not call {options.value} (called {', '.join(made)})"
    return Score(scorer="tool_call", value=0.0, passed=False, reason=reason)


@scorer("max_cost", options=CostOptions)
def max_cost(sample: Sample, answer: Answer, options: CostOptions) -> Score:
    """The answer's new cost is at most ``dollars`` (replayed requests cost nothing)."""
    if answer.estimated_cost is None:
        return Score(
            scorer="max_cost",
            value=0.0,
            passed=False,
            error="no cost known: give the model provider block prices for this model",
        )
    passed = answer.estimated_cost <= options.dollars
    return _verdict(
        "max_cost", passed, f"${answer.estimated_cost:.6f} of ${options.dollars:g} allowed"
    )


@scorer("max_latency", options=LatencyOptions)
def max_latency(sample: Sample, answer: Answer, options: LatencyOptions) -> Score:
    """The answer took at most ``seconds``."""
    passed = answer.latency_seconds <= options.seconds
    return _verdict(
        "max_latency", passed, f"{answer.latency_seconds:.2f} s of {options.seconds:g} s allowed"
    )


BUILT_IN: tuple[Scorer, ...] = (
    exact,
    includes,
    regex,
    json_schema,
    numeric,
    tool_call,
    max_cost,
    max_latency,
    rubric,
)


class ScorerSet:
    """The scorers checks may name: built-in, installed, and passed in."""

    def __init__(self, scorers: Iterable[Scorer]) -> None:
        self._by_name: dict[str, Scorer] = {}
        for item in scorers:
            self._by_name[item.name] = item

    @classmethod
    def installed(cls, extra: Iterable[Scorer] = ()) -> ScorerSet:
        """The built-in scorers, the ``aiorch.scorers`` entry point's, then ``extra``."""
        found: list[Scorer] = []
        for point in entry_points(group=ENTRY_POINT_GROUP):
            loaded = point.load()
            if not isinstance(loaded, Scorer):
                raise ConfigurationError(
                    f"entry point {ENTRY_POINT_GROUP}:{point.name} is not a Scorer; decorate "
                    "the function with aiorch.tasks.evaluation.scoring.scorer"
                )
            found.append(loaded)
        return cls([*BUILT_IN, *found, *extra])

    def names(self) -> list[str]:
        """The names checks may use, sorted."""
        return sorted(self._by_name)

    def validate(self, check: Check, where: str) -> None:
        """Refuse ``check`` unless it names a scorer here with options it accepts.

        Raises:
            ConfigurationError: naming ``where``: ``where.type`` for an unknown scorer,
                ``where`` and the option for bad options.
        """
        self.resolve(check.type, f"{where}.type").parse_options(check, where)

    def resolve(self, name: str, where: str) -> Scorer:
        """The scorer ``name``; the error says ``where`` and suggests a close name."""
        found = self._by_name.get(name)
        if found is not None:
            return found
        close = difflib.get_close_matches(name, self._by_name, n=1, cutoff=0.6)
        hint = (
            f"did you mean {close[0]!r}?" if close else f"the scorers are {', '.join(self.names())}"
        )
        raise ConfigurationError(f"{where}: no scorer {name!r}; {hint}")
