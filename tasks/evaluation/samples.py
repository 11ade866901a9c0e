"""A sample of an evaluation dataset and the checks its answer must pass."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from aiorch.core.models import AiorchModel

SAMPLE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"


class ChatTurn(AiorchModel):
    """One message of a sample's input conversation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant"]
    content: str


class Check(AiorchModel):
    """One check of an answer: a scorer's name, its ``value`` and its other options.

    Written as promptfoo writes assertions: ``{type: includes, value: Paris}``; keys
    other than ``type``, ``value``, ``threshold`` and ``weight`` are the scorer's options
    (``{type: numeric, value: 42, tolerance: 0.5}``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(min_length=1, description="The scorer: exact, includes, regex, ...")
    value: Any = None
    threshold: float | None = Field(
        default=None, ge=0.0, le=1.0, description="A score at or above it passes."
    )
    weight: float = Field(default=1.0, ge=0.0, description="Its share of the sample's score.")
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _gather_options(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "options" in data:
            return data
        known = {"type", "value", "threshold", "weight"}
        options = {key: value for key, value in data.items() if key not in known}
        return {**{key: data[key] for key in known & data.keys()}, "options": options}


class Sample(AiorchModel):
    """One input for the agent, what a right answer is, and how to tell."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=SAMPLE_ID, description="Unique in its dataset; results key on it.")
    input: str | list[ChatTurn] = Field(description="A prompt, or a conversation.")
    target: str | list[str] | None = Field(
        default=None, description="The right answer (or any of several)."
    )
    metadata: dict[str, Any] = Field(default_factory=dict)
    checks: list[Check] = Field(
        default_factory=list,
        description="How the answer is scored; the evaluation's default checks if empty.",
    )

    def prompt(self) -> str:
        """The input as one prompt (a conversation's turns, one per line, with roles)."""
        if isinstance(self.input, str):
            return self.input
        return "\n".join(f"{turn.role}: {turn.content}" for turn in self.input)

    def targets(self) -> list[str]:
        """The target as a list (empty without one)."""
        if self.target is None:
            return []
        return [self.target] if isinstance(self.target, str) else list(self.target)
