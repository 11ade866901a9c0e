"""Any failure as an RFC 9457 problem-details document, without secrets.

``type`` is ``urn:aiorch:problem:<kind>`` from the error taxonomy (:mod:`aiorch.core.errors`);
errors from outside aiorch get the kind ``unexpected-error``. Extension members carry
what a person or an automation needs: whether a retry may help, the flow run and task
run, and the error's own context (step, runner, model, exit code, log tail, breaker).
Every text is passed through :func:`aiorch.core.redaction.redact`.

Example:
    ```python
    from aiorch.core.errors import ConfigurationError
    from aiorch.tasks.resilience.problems import problem_from_exception

    problem = problem_from_exception(ConfigurationError("runner: must be one of ..."))
    print(problem.type, problem.status)  # urn:aiorch:problem:configuration-error 400
    ```
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from aiorch.core.errors import AiorchError
from aiorch.core.models import AiorchModel
from aiorch.core.redaction import redact

TYPE_PREFIX = "urn:aiorch:problem:"


class ProblemDetails(AiorchModel):
    """RFC 9457 members plus aiorch's extensions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(description="URI naming the kind of problem.")
    title: str = Field(description="Short summary of the kind of problem.")
    status: int = Field(description="HTTP-like status code of the kind.")
    detail: str = Field(description="What happened this time.")
    instance: str | None = Field(
        default=None, description="The occurrence: the task run, or the flow run."
    )
    retryable: bool
    retry_after: float | None = None
    error: str = Field(description="The exception class.")
    flow_run_id: str | None = None
    task_run_id: str | None = None
    task: str | None = None
    context: dict[str, Any] = Field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The last part of ``type``."""
        return self.type.removeprefix(TYPE_PREFIX)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clean(item) for item in value]
    return value


def problem_from_exception(
    error: BaseException,
    *,
    flow_run_id: str | None = None,
    task_run_id: str | None = None,
    task: str | None = None,
) -> ProblemDetails:
    """The problem-details document for ``error``."""
    if isinstance(error, AiorchError):
        kind, title, status = error.kind, error.title, error.status
        context = error.context()
    else:
        kind, title, status = "unexpected-error", "Unexpected error", 500
        context = {}
    instance = (
        f"urn:prefect:task-run:{task_run_id}"
        if task_run_id
        else (f"urn:prefect:flow-run:{flow_run_id}" if flow_run_id else None)
    )
    return ProblemDetails(
        type=f"{TYPE_PREFIX}{kind}",
        title=title,
        status=status,
        detail=redact(str(error) or type(error).__name__),
        instance=instance,
        retryable=bool(getattr(error, "retryable", not isinstance(error, AiorchError))),
        retry_after=getattr(error, "retry_after", None),
        error=type(error).__name__,
        flow_run_id=flow_run_id,
        task_run_id=task_run_id,
        task=task,
        context=_clean(context),
    )
