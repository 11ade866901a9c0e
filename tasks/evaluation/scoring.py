"""What a scorer sees and returns: the agent's answer to a sample, and its score.

A scorer is a plain function ``(sample, answer, options) -> Score | float | bool`` (or a
coroutine function); :func:`scorer` turns one into a :class:`Scorer` with a name and an
options model, without registering it anywhere: pass it to an evaluation, or publish it
under the ``aiorch.scorers`` entry point so datasets can name it.

Example:
    ```python
    from aiorch.tasks.evaluation.scoring import Answer, scorer

    @scorer("short")
    def short(sample, answer: Answer, options) -> bool:
        return len(answer.text) <= 80
    ```
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aiorch.core.errors import ConfigurationError, validation_problems
from aiorch.core.models import AiorchModel
from aiorch.tasks.agents.recording import Recording
from aiorch.tasks.agents.usage import TokenUsage
from aiorch.tasks.evaluation.samples import Check, Sample


class ToolCallRecord(AiorchModel):
    """One MCP tool call the agent made: the tool's name and its arguments."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Answer(AiorchModel):
    """What the agent produced for one sample (one epoch)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    output: Any = Field(default=None, description="The structured output, if any.")
    model: str = ""
    usage: TokenUsage = Field(default_factory=TokenUsage)
    estimated_cost: float | None = Field(
        default=None,
        description="New cost of this answer: 0 when every request was replayed from cache.",
    )
    latency_seconds: float = 0.0
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    cache_hit: bool = False
    recording: Recording | None = Field(
        default=None, description="The model requests and tool calls that made it."
    )


class Score(AiorchModel):
    """One check's verdict on one answer.

    ``error`` is set when the check could not be made (a grader's unusable reply, a
    scorer that raised): the value is then 0 and the sample counts as an error, not a
    failure, and the rest of the evaluation goes on.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    scorer: str
    value: float = Field(ge=0.0, le=1.0)
    passed: bool
    reason: str = ""
    error: str | None = None


class NoOptions(AiorchModel):
    """A scorer that takes no options beyond ``value``."""

    model_config = ConfigDict(extra="forbid")

    value: Any = None


ScoreFunction = Callable[
    [Sample, Answer, Any], "Score | float | bool | Awaitable[Score | float | bool]"
]


class Scorer:
    """A named scoring function with the options model its checks are validated by."""

    def __init__(
        self,
        name: str,
        function: ScoreFunction,
        options: type[BaseModel] = NoOptions,
        threshold: float = 1.0,
    ) -> None:
        self.name = name
        self.function = function
        self.options = options
        self.threshold = threshold
        self.__doc__ = function.__doc__

    def __repr__(self) -> str:
        return f"Scorer({self.name!r})"

    def parse_options(self, check: Check, where: str) -> BaseModel:
        """``check``'s options as this scorer's model; the error names ``where`` and the field."""
        try:
            return self.options.model_validate({"value": check.value, **check.options})
        except ValidationError as error:
            raise ConfigurationError(
                f"{where}: check {self.name!r}: {validation_problems(error, 'options')}"
            ) from None

    async def score(self, sample: Sample, answer: Answer, check: Check) -> Score:
        """Run the function on ``answer``; a raised error becomes an error score."""
        try:
            options = self.parse_options(check, f"sample {sample.id}")
            verdict = self.function(sample, answer, options)
            if inspect.isawaitable(verdict):
                verdict = await verdict
        except Exception as error:  # a scorer's bug must not end the evaluation
            return Score(
                scorer=self.name,
                value=0.0,
                passed=False,
                error=f"{type(error).__name__}: {error}",
            )
        return self._as_score(verdict, check)

    def _as_score(self, verdict: Score | float | bool, check: Check) -> Score:
        threshold = check.threshold if check.threshold is not None else self.threshold
        if isinstance(verdict, Score):
            if check.threshold is None or verdict.error is not None:
                return verdict
            return verdict.model_copy(update={"passed": verdict.value >= check.threshold})
        if isinstance(verdict, bool):
            return Score(scorer=self.name, value=float(verdict), passed=verdict)
        value = float(verdict)
        if math.isnan(value) or not 0.0 <= value <= 1.0:
            return Score(
                scorer=self.name,
                value=0.0,
                passed=False,
                error=f"the scorer returned {value!r}; a score is a number from 0 to 1",
            )
        return Score(scorer=self.name, value=value, passed=value >= threshold)


def scorer(
    name: str, *, options: type[BaseModel] = NoOptions, threshold: float = 1.0
) -> Callable[[ScoreFunction], Scorer]:
    """Make ``function`` a :class:`Scorer` named ``name``.

    Args:
        name: What datasets write as a check's ``type``.
        options: The pydantic model a check's options (and ``value``) are validated by.
        threshold: A numeric score at or above it passes (checks may set their own).
    """

    def wrap(function: ScoreFunction) -> Scorer:
        return Scorer(name, function, options, threshold)

    return wrap
