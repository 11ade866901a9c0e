"""aiorch: containerised steps and LLM agents as durable, observable Prefect 3 workflows.

The names users author flows with: container steps, agent blocks and calls, retry
policies and circuit breakers, and the report hooks. Everything else is importable by
its module path (``aiorch.tasks.container.spec``, ``aiorch.deploy.environments``, ...)
and not part of this surface.

Example:
    ```python
    from prefect import flow

    from aiorch import Agent, ContainerStep, run_agent, run_step

    @flow
    def hello() -> str:
        step = ContainerStep(name="hello", image="busybox", commands=[["echo", "hi"]])
        said = run_step(step, runner="local").stdout_tail
        agent = Agent(instruction="Repeat the user.", model="passthrough")
        return run_agent(agent, said).text
    ```
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiorch.core.lazy import lazy_exports

if TYPE_CHECKING:
    from aiorch.agent_blocks import Agent, HistoryPolicy, McpServer, ModelProvider, TokenPrice
    from aiorch.core.errors import AiorchError, ConfigurationError
    from aiorch.tasks.agents.errors import (
        AgentCallError,
        StructuredOutputError,
        ToolCallError,
        retry_if_retryable,
    )
    from aiorch.tasks.agents.task import AgentResult, arun_agent, run_agent
    from aiorch.tasks.container import (
        CacheVolume,
        ContainerStep,
        EngineUnavailable,
        RunnerKind,
        SecretRef,
        StepError,
        StepFailed,
        StepInput,
        StepResult,
        StepTimedOut,
        arun_step,
        run_step,
    )
    from aiorch.tasks.container.dagger_engine import DaggerEngine
    from aiorch.tasks.container.dagger_session import close_dagger_session
    from aiorch.tasks.container.pipeline import dagger_task
    from aiorch.tasks.monitoring.alerts import evaluate_alerts
    from aiorch.tasks.monitoring.progress import wait_with_progress
    from aiorch.tasks.monitoring.run_report import publish_run_report
    from aiorch.tasks.resilience.breaker import BreakerConfig, CircuitBreaker, CircuitOpenError
    from aiorch.tasks.resilience.report import report_task_failure, summarize_failures
    from aiorch.tasks.resilience.retry import RetryPolicy

# Each public name and the module that defines it, imported on first use: importing a
# submodule (``aiorch.core.settings`` in a helper process, ``aiorch.blocks`` when Prefect
# loads its collections) does not load the whole package.
_EXPORTS = {
    "Agent": "aiorch.agent_blocks",
    "AgentCallError": "aiorch.tasks.agents.errors",
    "AgentResult": "aiorch.tasks.agents.task",
    "AiorchError": "aiorch.core.errors",
    "BreakerConfig": "aiorch.tasks.resilience.breaker",
    "CacheVolume": "aiorch.tasks.container",
    "CircuitBreaker": "aiorch.tasks.resilience.breaker",
    "CircuitOpenError": "aiorch.tasks.resilience.breaker",
    "ConfigurationError": "aiorch.core.errors",
    "ContainerStep": "aiorch.tasks.container",
    "DaggerEngine": "aiorch.tasks.container.dagger_engine",
    "EngineUnavailable": "aiorch.tasks.container",
    "HistoryPolicy": "aiorch.agent_blocks",
    "McpServer": "aiorch.agent_blocks",
    "ModelProvider": "aiorch.agent_blocks",
    "RetryPolicy": "aiorch.tasks.resilience.retry",
    "RunnerKind": "aiorch.tasks.container",
    "SecretRef": "aiorch.tasks.container",
    "StepError": "aiorch.tasks.container",
    "StepFailed": "aiorch.tasks.container",
    "StepInput": "aiorch.tasks.container",
    "StepResult": "aiorch.tasks.container",
    "StepTimedOut": "aiorch.tasks.container",
    "StructuredOutputError": "aiorch.tasks.agents.errors",
    "TokenPrice": "aiorch.agent_blocks",
    "ToolCallError": "aiorch.tasks.agents.errors",
    "arun_agent": "aiorch.tasks.agents.task",
    "arun_step": "aiorch.tasks.container",
    "close_dagger_session": "aiorch.tasks.container.dagger_session",
    "dagger_task": "aiorch.tasks.container.pipeline",
    "evaluate_alerts": "aiorch.tasks.monitoring.alerts",
    "publish_run_report": "aiorch.tasks.monitoring.run_report",
    "report_task_failure": "aiorch.tasks.resilience.report",
    "retry_if_retryable": "aiorch.tasks.agents.errors",
    "run_agent": "aiorch.tasks.agents.task",
    "run_step": "aiorch.tasks.container",
    "summarize_failures": "aiorch.tasks.resilience.report",
    "wait_with_progress": "aiorch.tasks.monitoring.progress",
}

__all__ = [
    "Agent",
    "AgentCallError",
    "AgentResult",
    "AiorchError",
    "BreakerConfig",
    "CacheVolume",
    "CircuitBreaker",
    "CircuitOpenError",
    "ConfigurationError",
    "ContainerStep",
    "DaggerEngine",
    "EngineUnavailable",
    "HistoryPolicy",
    "McpServer",
    "ModelProvider",
    "RetryPolicy",
    "RunnerKind",
    "SecretRef",
    "StepError",
    "StepFailed",
    "StepInput",
    "StepResult",
    "StepTimedOut",
    "StructuredOutputError",
    "TokenPrice",
    "ToolCallError",
    "arun_agent",
    "arun_step",
    "close_dagger_session",
    "dagger_task",
    "evaluate_alerts",
    "publish_run_report",
    "report_task_failure",
    "retry_if_retryable",
    "run_agent",
    "run_step",
    "summarize_failures",
    "wait_with_progress",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
