"""Ask an agent configured by a Prefect block: the deployable form of ``run_agent``.

The agent's model, fallbacks, instruction, MCP servers and provider are all in the
Agent block (``aiorch-assistant`` unless told otherwise), so one deployment serves dev,
staging and prod: each environment's server holds its own block under the same name
(``aiorch environment apply``). A missing block fails the run at once with the command
that creates it. The answer is published as the markdown artifact ``aiorch-answer``.

Example:
    ```python
    from aiorch.agent_blocks import Agent
    from aiorch.flows.ask_agent import ask_agent

    Agent(instruction="Answer briefly.", model="passthrough").save("echo", overwrite=True)
    result = ask_agent("What is Prefect?", agent="echo")
    print(result.text)
    ```
"""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from pydantic import Field

from aiorch.agent_blocks import Agent
from aiorch.tasks.agents.task import AgentResult, run_agent
from aiorch.tasks.blocks import load_block
from aiorch.tasks.monitoring.alerts import evaluate_alerts
from aiorch.tasks.monitoring.run_report import publish_run_report

ANSWER_KEY = "aiorch-answer"
DEFAULT_AGENT = "aiorch-assistant"


@flow(
    name="aiorch-ask-agent",
    on_completion=[publish_run_report, evaluate_alerts],
    on_failure=[publish_run_report, evaluate_alerts],
)
def ask_agent(
    prompt: Annotated[str, Field(min_length=1, description="What to ask the agent.")],
    agent: Annotated[
        str, Field(min_length=1, description="Name of the Agent block to ask.")
    ] = DEFAULT_AGENT,
) -> AgentResult:
    """Load the ``agent`` block, ask it ``prompt`` and publish the answer."""
    config = load_block(Agent, agent)
    result = run_agent(config, prompt)
    quoted = "\n".join(f"> {line}" for line in prompt.splitlines())
    create_markdown_artifact(
        key=ANSWER_KEY,
        markdown=f"# Answer of {agent} ({result.model})\n\n{quoted}\n\n{result.text}\n",
        description=f"The answer of agent block {agent}",
    )
    return result
