"""Run one agent call inside a flow run, as user code would."""

from __future__ import annotations

from typing import Any

from prefect import flow

from aiorch.agent_blocks import Agent
from aiorch.tasks.agents.task import AgentResult, run_agent


def call_in_flow(agent: Agent | str, prompt: str = "hi", **options: Any) -> AgentResult:
    """``run_agent(agent, prompt, **options)`` in a new flow run; its result."""

    @flow(name="agent-test")
    def call() -> AgentResult:
        result: AgentResult = run_agent(agent, prompt, **options)
        return result

    return call()
