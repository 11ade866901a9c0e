"""Task-run naming: what container steps and agent calls build, monitoring reads back."""

from __future__ import annotations

from typing import Any

from prefect import Task

from aiorch.tasks.agents.requests import model_request
from aiorch.tasks.agents.task import arun_agent, run_agent
from aiorch.tasks.agents.tools import tool_call
from aiorch.tasks.container.task import arun_step, execute_step, run_step
from aiorch.tasks.naming import (
    TaskKind,
    describe,
    execution_run_name,
    model_request_run_name,
    tool_call_run_name,
)


def test_each_aiorch_task_has_its_kind() -> None:
    tasks: dict[TaskKind, list[Task[..., Any]]] = {
        TaskKind.STEP: [run_step, arun_step],
        TaskKind.STEP_EXECUTION: [execute_step],
        TaskKind.AGENT_CALL: [run_agent, arun_agent],
        TaskKind.MODEL_REQUEST: [model_request],
        TaskKind.TOOL_CALL: [tool_call],
    }
    for kind, of_kind in tasks.items():
        for task in of_kind:
            assert describe(task.task_key, task.name)[0] is kind, task.task_key


def test_details_read_back_what_the_builders_wrote() -> None:
    assert describe(execute_step.task_key, execution_run_name("build-x", "docker")) == (
        TaskKind.STEP_EXECUTION,
        "docker",
    )
    assert describe(model_request.task_key, model_request_run_name("generic.smollm2")) == (
        TaskKind.MODEL_REQUEST,
        "generic.smollm2",
    )
    assert describe(tool_call.task_key, tool_call_run_name("calc__add")) == (
        TaskKind.TOOL_CALL,
        "calc__add",
    )
    assert describe("count_words-0a1b", "count-words-3") == (TaskKind.TASK, None)


def test_the_sync_and_async_twins_share_one_signature() -> None:
    import inspect

    for sync, async_ in ((run_step, arun_step), (run_agent, arun_agent)):
        assert inspect.signature(sync.fn) == inspect.signature(async_.fn)
        assert sync.fn.__doc__ == async_.fn.__doc__
        assert not sync.isasync
        assert async_.isasync
