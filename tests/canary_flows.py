"""Flows that handle one canary value per secret source, run by tests/test_secret_canaries.py.

    python -m tests.canary_flows SCENARIO PROXY_URL SCRATCH

``failing``: each secret source is echoed back by something careless (a provider's 401,
the user's command, an MCP tool's error) and each call fails. ``succeeding``: the same
sources on calls that complete. ``crashing``: a step holding secrets is running when
the test kills this process. The canaries come from the environment (the provider key,
as a user sets it) and from blocks the test saved (the rest).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from pydantic import SecretStr

from aiorch.agent_blocks import Agent, McpServer, ModelProvider
from aiorch.tasks.agents.task import run_agent
from aiorch.tasks.container import ContainerStep, SecretRef, run_step
from aiorch.tasks.resilience.report import summarize_failures

CALCULATOR = Path(__file__).parent / "mcp" / "calculator.py"


def _step(name: str, script: str) -> ContainerStep:
    return ContainerStep(
        name=name,
        image="busybox",
        commands=[["sh", "-c", script]],
        secrets={
            "STEP_TOKEN": SecretStr(os.environ["CANARY_STEP"]),
            "BLOCK_TOKEN": SecretRef(block="canary-step-secret"),
        },
        outputs=["out"],
    )


def _tool_agent() -> Agent:
    server = McpServer(
        name="calc",
        command=sys.executable,
        args=[str(CALCULATOR)],
        secret_env={"AIORCH_TEST_TOOL_SECRET": "canary-mcp-secret"},
    )
    return Agent(instruction="x", model="passthrough", mcp_servers=[server], max_tool_rounds=1)


@flow(name="canary-failing", on_failure=[summarize_failures])
def failing(proxy_url: str) -> None:
    """Every call fails, each with a secret in what failed."""
    print(f"flow-run {flow_run.get_id()}", flush=True)
    from_environment = Agent(
        instruction="x",
        model="openai.gpt-4.1-mini",
        provider=ModelProvider(kind="openai", base_url=proxy_url),
    )
    from_block = Agent(
        instruction="x", model="generic.smollm2", provider=ModelProvider.load("canary-provider")
    )
    futures: list[PrefectFuture[Any]] = [
        run_agent.submit(from_environment, "hi"),
        run_agent.submit(from_block, "hi"),
        run_step.submit(
            _step("canary-echo-fails", "echo $STEP_TOKEN; echo $BLOCK_TOKEN >&2; exit 3"),
            "local",
        ),
        run_agent.submit(_tool_agent(), "***CALL_TOOL calc__refuse {}"),
    ]
    for future in futures:
        future.wait()
    for future in futures:
        future.result()


@flow(name="canary-succeeding", on_completion=[summarize_failures])
def succeeding() -> None:
    """The step prints its secrets and completes; the tool's refusal reaches the model."""
    print(f"flow-run {flow_run.get_id()}", flush=True)
    run_step(_step("canary-echo-ok", "mkdir out; echo $STEP_TOKEN; echo $BLOCK_TOKEN"), "local")
    run_agent(_tool_agent(), "***CALL_TOOL calc__refuse {}")


@flow(name="canary-crashing")
def crashing(started: str) -> None:
    """Killed by the test while its step, which printed its secrets, still runs."""
    print(f"flow-run {flow_run.get_id()}", flush=True)
    script = f"echo $STEP_TOKEN $BLOCK_TOKEN; touch {started}; sleep 120; mkdir out"
    run_step(_step("canary-crashes", script), "local", cache=False)


if __name__ == "__main__":
    scenario, proxy_url, scratch = sys.argv[1:4]
    try:
        if scenario == "failing":
            failing(proxy_url)
        elif scenario == "succeeding":
            succeeding()
        else:
            crashing(str(Path(scratch) / "started"))
    except Exception as error:  # the failing flow's error, printed as a user would see it
        print(f"{type(error).__name__}: {error!r}")
