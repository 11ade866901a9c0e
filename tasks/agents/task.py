"""Prefect tasks that run an agent on a prompt: ``run_agent`` (sync) and ``arun_agent``.

The agent comes from an ``aiorch-agent`` block (loaded by name when the task runs, so
edits to the block apply to the next run) or is passed in. What a call does is in
``aiorch.tasks.agents.call``, imported when the first call runs: importing these tasks
(to define a flow) loads neither FastAgent nor MCP nor any model client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from aiorch.tasks.agents.result import AgentResult, CacheScope
from aiorch.tasks.resilience.report import report_task_failure
from aiorch.tasks.twins import task_pair

if TYPE_CHECKING:
    from aiorch.agent_blocks.agent import Agent

__all__ = ["AgentResult", "CacheScope", "arun_agent", "run_agent"]


async def _call_agent(
    agent: Agent | str,
    prompt: str,
    *,
    model: str | None = None,
    cache_scope: CacheScope = "flow-run",
    tenant: str | None = None,
    history: str | None = None,
    conversation: str | None = None,
    output_type: type[BaseModel] | None = None,
    overrides: dict[str, Any] | None = None,
) -> AgentResult:
    """Run an agent on a prompt as a Prefect task.

    ``run_agent`` is the sync task, ``arun_agent`` the async one (for async flows); both
    take the same arguments. The model (or the override) is tried first, then each
    fallback while failures are retryable.

    Args:
        agent: An ``Agent`` block, or the name of a saved one (loaded when the task runs).
        prompt: What to ask.
        model: Use this model instead of the block's, for this call only; with a
            history this switches models mid-conversation.
        cache_scope: ``flow-run`` (default): a completed request is replayed only by a
            retry of the same flow run. ``tenant``: shared by every run that passes the
            same ``tenant``.
        tenant: Who may share replayed requests; required with ``cache_scope="tenant"``.
        history: The ``history_json`` of an earlier result, to continue that
            conversation; the result's ``history_json`` holds it with this turn added.
        conversation: A key under which aiorch loads the conversation before the call
            and saves it after (in Prefect's result storage), across tasks, flow runs
            and machines; a retried turn is not added twice.
        output_type: A pydantic model the reply must fit (structured output); the
            parsed value is the result's ``output``. Overrides the block's
            ``output_schema``.
        overrides: Agent block fields to change for this call (e.g. from flow
            parameters): ``{"temperature": 0, "instruction": "..."}``; validated like
            the block itself.

    Raises:
        ConfigurationError: the configuration cannot work (named field and fix), before
            any model is called.
        AgentCallError: a model request failed; ``retryable`` tells Prefect's
            ``retry_condition_fn`` whether to try again.
        StructuredOutputError: the reply does not fit the output type.
        ToolCallError: an MCP server could not be reached or a tool timed out.

    Example:
        ```python
        from prefect import flow

        from aiorch.agent_blocks import Agent
        from aiorch.tasks.agents.task import run_agent

        @flow
        def echo() -> str:
            agent = Agent(instruction="Repeat the user.", model="passthrough")
            return run_agent(agent, "hello").text
        ```
    """
    from aiorch.tasks.agents.call import call_agent

    return await call_agent(
        agent,
        prompt,
        model=model,
        cache_scope=cache_scope,
        tenant=tenant,
        history=history,
        conversation=conversation,
        output_type=output_type,
        overrides=overrides,
    )


run_agent, arun_agent = task_pair(
    _call_agent, "run_agent", "arun_agent", name="agent-call", on_failure=[report_task_failure]
)
