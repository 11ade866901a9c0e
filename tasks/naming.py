"""How aiorch names its task runs, and how a run's kind and detail are read back.

The one module that knows both sides: container steps and agent calls name their task
runs with the builders here, and monitoring reads a run's kind (from its task key) and
detail (runner, model or tool, from its run name) with :func:`describe`. A run report
reads runs from the Prefect API, possibly in another process, so what it needs must be
in the run itself.

Example:
    ```python
    from aiorch.tasks.naming import TaskKind, describe, model_request_run_name

    name = model_request_run_name("generic.smollm2")
    assert describe("model_request-1a2b", name) == (TaskKind.MODEL_REQUEST, "generic.smollm2")
    ```
"""

from __future__ import annotations

from enum import StrEnum


class TaskKind(StrEnum):
    """What an aiorch task run does; ``task`` for any other task."""

    STEP = "step"
    STEP_EXECUTION = "step execution"
    AGENT_CALL = "agent call"
    MODEL_REQUEST = "model request"
    TOOL_CALL = "tool call"
    MESSAGE = "message"
    TASK = "task"


# Prefect's task key is "<function name>-<hash of its code>"; these are the functions of
# aiorch's tasks (tests/test_naming.py checks each against the real task).
KIND_BY_FUNCTION = {
    "run_step": TaskKind.STEP,
    "arun_step": TaskKind.STEP,
    "execute_step": TaskKind.STEP_EXECUTION,
    "run_agent": TaskKind.AGENT_CALL,
    "arun_agent": TaskKind.AGENT_CALL,
    "model_request": TaskKind.MODEL_REQUEST,
    "tool_call": TaskKind.TOOL_CALL,
    "handle_message": TaskKind.MESSAGE,
}
_EXECUTION = "-execute-"
_MODEL_REQUEST = "model-request-"
_TOOL_CALL = "tool-call-"


def execution_run_name(step: str, runner: str) -> str:
    """The run name of a step's execution on ``runner``."""
    return f"{step}{_EXECUTION}{runner}"


def model_request_run_name(model: str) -> str:
    """The run name of one request to ``model``."""
    return f"{_MODEL_REQUEST}{model}"


def tool_call_run_name(tool: str) -> str:
    """The run name of one call of ``tool`` (``server__tool``)."""
    return f"{_TOOL_CALL}{tool}"


def task_kind(task_key: str) -> TaskKind:
    """The kind of a task run from its task key."""
    return KIND_BY_FUNCTION.get(task_key.rsplit("-", 1)[0], TaskKind.TASK)


def describe(task_key: str, run_name: str) -> tuple[TaskKind, str | None]:
    """A task run's kind, and its detail: the runner, model or tool it ran."""
    kind = task_kind(task_key)
    detail = None
    if kind is TaskKind.STEP_EXECUTION and _EXECUTION in run_name:
        detail = run_name.rsplit(_EXECUTION, 1)[1]
    elif kind is TaskKind.MODEL_REQUEST and run_name.startswith(_MODEL_REQUEST):
        detail = run_name.removeprefix(_MODEL_REQUEST)
    elif kind is TaskKind.TOOL_CALL and run_name.startswith(_TOOL_CALL):
        detail = run_name.removeprefix(_TOOL_CALL)
    return kind, detail
