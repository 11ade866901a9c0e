"""Model-graded checks: grader agents judge an answer against a rubric, and vote.

``{"type": "rubric", "value": "names Paris as the capital", "graders": ["judge-a",
"judge-b"]}`` asks each grader (a saved ``Agent`` block) for a verdict as structured
output, ``{"passed": bool, "reason": str}``. The score is the share of graders that
passed the answer; it passes when more than half of those that gave a verdict did (or
at the check's own ``threshold``).

A grader whose reply is not a verdict (garbage, a refusal, a failed call) does not vote,
and its reason is kept; when no grader gives a verdict, the sample gets an error score
saying why, and the evaluation goes on. Verdicts are cached under the tenant
``aiorch-eval-graders``: grading the same answer with the same grader and rubric again
(a rerun, a re-score) replays the verdict instead of asking the grader.

Example:
    ```python
    from aiorch.tasks.evaluation.graders import grading_prompt

    print(grading_prompt("2 + 2?", "4", "the answer is 4").splitlines()[0])
    ```
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from aiorch.core.models import AiorchModel
from aiorch.tasks.evaluation.samples import Sample
from aiorch.tasks.evaluation.scoring import Answer, Score, scorer

GRADER_TENANT = "aiorch-eval-graders"
MAJORITY = 0.5


class GraderVerdict(AiorchModel):
    """What a grader must answer."""

    model_config = ConfigDict(extra="forbid")

    passed: bool = Field(description="Whether the answer meets the rubric.")
    reason: str = Field(description="Why, in one sentence.")


class RubricOptions(AiorchModel):
    """``value``: the rubric; ``graders``: the Agent blocks that judge (they vote)."""

    model_config = ConfigDict(extra="forbid")

    value: str = Field(min_length=1)
    graders: list[str] = Field(min_length=1)


def grading_prompt(question: str, answer: str, rubric: str) -> str:
    """What each grader is asked."""
    return (
        "You grade an answer against a rubric.\n"
        f"Question: {question}\n"
        f"Answer: {answer}\n"
        f"Rubric: {rubric}\n"
        'Reply with JSON only: {"passed": true or false, "reason": "one sentence"}.'
    )


@scorer("rubric", options=RubricOptions)
async def rubric(sample: Sample, answer: Answer, options: RubricOptions) -> Score:
    """The graders' vote on whether the answer meets the rubric."""
    from aiorch.tasks.agents.task import arun_agent
    from aiorch.tasks.resilience.problems import problem_from_exception

    prompt = grading_prompt(sample.prompt(), answer.text, options.value)
    votes: dict[str, bool] = {}
    notes: list[str] = []
    for grader in options.graders:
        try:
            result = await arun_agent(
                grader,
                prompt,
                output_type=GraderVerdict,
                cache_scope="tenant",
                tenant=GRADER_TENANT,
            )
        except Exception as error:  # a grader's failure is one lost vote, not the run's
            problem = problem_from_exception(error)
            notes.append(f"{grader}: no verdict ({problem.kind}: {problem.detail})")
            continue
        verdict = GraderVerdict.model_validate(result.output)
        votes[grader] = verdict.passed
        notes.append(f"{grader}: {'pass' if verdict.passed else 'fail'} ({verdict.reason})")
    if not votes:
        return Score(
            scorer="rubric",
            value=0.0,
            passed=False,
            error="no grader gave a verdict: " + "; ".join(notes),
        )
    value = sum(votes.values()) / len(votes)
    return Score(scorer="rubric", value=value, passed=value > MAJORITY, reason="; ".join(notes))
