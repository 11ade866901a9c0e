"""End to end with a real language model over real HTTP."""

from __future__ import annotations

from prefect import flow
from pydantic import SecretStr

from agent_blocks import Agent, ModelProvider
from tasks.agents.task import AgentResult, run_agent


def test_agent_answers_through_a_real_model(prefect_api: str, local_model: str) -> None:
    provider = ModelProvider(kind="generic", base_url=local_model, api_key=SecretStr("local"))
    agent = Agent(
        instruction="You answer geography questions with one word.",
        model="generic.smollm2",
        provider=provider,
        temperature=0,
        max_tokens=16,
    )

    @flow(name="local-model-test")
    def ask() -> AgentResult:
        result: AgentResult = run_agent(agent, "What is the capital of France?")
        return result

    result = ask()
    assert "paris" in result.text.lower()
    assert result.model == "generic.smollm2"
    assert result.stop_reason in {"endTurn", "maxTokens"}
    assert result.latency_seconds > 0
