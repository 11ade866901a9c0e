"""Agent calls as Prefect tasks: blocks, the shared runtime, model override, errors."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest
from prefect import flow, task, unmapped
from prefect.settings import get_current_settings
from pydantic import SecretStr, ValidationError

from aiorch.agent_blocks import Agent, ModelProvider
from aiorch.tasks.agents.conversation import parse_history
from aiorch.tasks.agents.endpoints import credential_fingerprint
from aiorch.tasks.agents.errors import AgentCallError
from aiorch.tasks.agents.requests import request_cache_key
from aiorch.tasks.agents.task import AgentResult, arun_agent, run_agent
from aiorch.testing.fault_proxy import Fault, running_fault_proxy
from tests.agent_flows import call_in_flow
from tests.services import PROVIDER_ERRORS

CANARY = "sk-agent-canary-4c2b9e"


def test_passthrough_agent_answers_with_history(prefect_api: str) -> None:
    agent = Agent(instruction="Repeat the user.", model="passthrough")
    result = call_in_flow(agent, "hello there")
    assert result.text == "hello there"
    assert result.model == "passthrough"
    history = json.loads(result.history_json)
    assert [message["role"] for message in history["messages"]] == ["user", "assistant"]
    assert history["messages"][0]["content"][0]["text"] == "hello there"


def test_agent_block_is_loaded_when_the_task_runs(prefect_api: str) -> None:
    Agent(instruction="v1", model="passthrough").save("edited-agent", overwrite=True)
    assert call_in_flow("edited-agent", "***FIXED_RESPONSE first").text == "first"
    # Editing the block changes the next run; nothing is redeployed.
    Agent(instruction="v2", model="slow").save("edited-agent", overwrite=True)
    assert call_in_flow("edited-agent", "x").model == "slow"


@pytest.mark.logs_errors("ConfigurationError")
def test_model_can_be_overridden_per_call(prefect_api: str) -> None:
    agent = Agent(instruction="x", model="slow")
    assert call_in_flow(agent, "hi", model="passthrough").model == "passthrough"
    with pytest.raises(ValueError, match=r"model override 'nope\.nope' is not a model"):
        call_in_flow(agent, "hi", model="nope.nope")


def test_concurrent_calls_share_one_runtime(prefect_api: str) -> None:
    agent = Agent(instruction="x", model="passthrough")

    @flow(name="agent-fan-out-test")
    def many() -> list[str]:
        prompts = [f"***FIXED_RESPONSE answer {index}" for index in range(8)]
        return [result.text for result in run_agent.map(unmapped(agent), prompts).result()]

    assert many() == [f"answer {index}" for index in range(8)]


def test_async_task_in_an_async_flow(prefect_api: str) -> None:
    import anyio

    @flow(name="agent-async-test")
    async def call() -> str:
        result = await arun_agent(Agent(instruction="x", model="passthrough"), "async hello")
        return result.text

    assert anyio.run(call) == "async hello"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model": "nonsense.model"}, "model 'nonsense.model' is not a model FastAgent knows"),
        ({"model": "generic.smollm2"}, "is a generic.* model: set provider"),
        ({"fallback_models": ["bogus.x"]}, "fallback_models entry 'bogus.x' is not a model"),
        (
            {"model": "openai.gpt-4.1-mini", "provider": {"kind": "anthropic"}},
            "served by 'openai' but provider.kind is 'anthropic'",
        ),
        ({"temperature": 3}, "temperature"),
        ({"instruction": ""}, "instruction"),
    ],
)
def test_invalid_agents_name_the_field_and_the_fix(fields: dict[str, Any], message: str) -> None:
    spec = {"instruction": "x", "model": "passthrough", **fields}
    with pytest.raises(ValidationError, match=message.replace("*", r"\*").replace("(", r"\(")):
        Agent.model_validate(spec)


@pytest.fixture
def failing_endpoint(request: pytest.FixtureRequest) -> Iterator[str]:
    """A local OpenAI-compatible endpoint that fails every request with one status."""
    fault = Fault(status=request.param, message=f"Incorrect API key provided: {CANARY}")
    with running_fault_proxy(default=fault) as proxy:
        yield proxy.base_url


@pytest.mark.parametrize(
    ("failing_endpoint", "retryable"),
    [(401, False), (429, True), (500, True)],
    indirect=["failing_endpoint"],
)
@pytest.mark.logs_errors(*PROVIDER_ERRORS)
def test_provider_failures_are_typed_and_never_leak_the_key(
    prefect_api: str, failing_endpoint: str, retryable: bool
) -> None:
    provider = ModelProvider(kind="generic", base_url=failing_endpoint, api_key=SecretStr(CANARY))
    agent = Agent(instruction="x", model="generic.smollm2", provider=provider)
    with pytest.raises(AgentCallError) as caught:
        call_in_flow(agent, "hi")
    assert caught.value.retryable is retryable
    assert CANARY not in str(caught.value)
    assert caught.value.model == "generic.smollm2"


@pytest.mark.parametrize("failing_endpoint", [500], indirect=True)
@pytest.mark.logs_errors(*PROVIDER_ERRORS)
def test_retryable_failure_moves_to_the_next_fallback(
    prefect_api: str, failing_endpoint: str
) -> None:
    provider = ModelProvider(kind="generic", base_url=failing_endpoint, api_key=SecretStr(CANARY))
    agent = Agent(
        instruction="x",
        model="generic.smollm2",
        fallback_models=["passthrough"],
        provider=provider,
    )
    result = call_in_flow(agent, "still answered")
    assert (result.model, result.failed_models) == ("passthrough", ["generic.smollm2"])
    assert result.text == "still answered"


@pytest.mark.parametrize("failing_endpoint", [401], indirect=True)
@pytest.mark.logs_errors(*PROVIDER_ERRORS)
def test_non_retryable_failure_does_not_fall_back(prefect_api: str, failing_endpoint: str) -> None:
    provider = ModelProvider(kind="generic", base_url=failing_endpoint, api_key=SecretStr(CANARY))
    agent = Agent(
        instruction="x", model="generic.smollm2", fallback_models=["passthrough"], provider=provider
    )
    with pytest.raises(AgentCallError) as caught:
        call_in_flow(agent, "hi")
    assert caught.value.provider_status == 401
    assert caught.value.retryable is False


@pytest.mark.logs_errors("RuntimeError")
def test_a_retried_flow_replays_completed_requests(prefect_api: str) -> None:
    agent = Agent(instruction="x", model="passthrough")
    attempts: list[AgentResult] = []

    @flow(name="agent-retry-test", retries=1)
    def flaky() -> AgentResult:
        result: AgentResult = run_agent(agent, "***FIXED_RESPONSE durable")
        attempts.append(result)
        if len(attempts) == 1:
            raise RuntimeError("the flow fails after the model answered")
        return result

    final = flaky()
    assert [result.cache_hit for result in attempts] == [False, True]
    assert final.text == "durable"


@pytest.mark.logs_errors("ConfigurationError")
def test_requests_are_not_shared_between_flow_runs_unless_a_tenant_is_named(
    prefect_api: str,
) -> None:
    agent = Agent(instruction="x", model="passthrough")
    prompt = f"***FIXED_RESPONSE scoped {id(agent)}"
    assert not call_in_flow(agent, prompt).cache_hit
    assert not call_in_flow(agent, prompt).cache_hit  # another flow run: no cross-run replay
    assert not call_in_flow(agent, prompt, cache_scope="tenant", tenant="acme").cache_hit
    assert call_in_flow(agent, prompt, cache_scope="tenant", tenant="acme").cache_hit
    assert not call_in_flow(agent, prompt, cache_scope="tenant", tenant="globex").cache_hit
    with pytest.raises(ValueError, match=r"cache_scope='tenant' needs tenant=\.\.\."):
        call_in_flow(agent, prompt, cache_scope="tenant")


def _user(text: str) -> list[Any]:
    return parse_history(
        json.dumps({"messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]})
    )


def test_request_keys_follow_the_endpoint_but_never_hold_the_key() -> None:
    def agent_with(key: str, url: str) -> Agent:
        provider = ModelProvider(kind="generic", base_url=url, api_key=SecretStr(key))
        return Agent(instruction="x", model="generic.smollm2", provider=provider)

    base = request_cache_key(agent_with(CANARY, "http://a/v1"), "generic.smollm2", _user("p"), "t")
    assert base is not None
    assert CANARY not in base
    assert credential_fingerprint(agent_with(CANARY, "http://a/v1").provider).count(CANARY) == 0
    other_key = request_cache_key(
        agent_with("other", "http://a/v1"), "generic.smollm2", _user("p"), "t"
    )
    other_url = request_cache_key(
        agent_with(CANARY, "http://b/v1"), "generic.smollm2", _user("p"), "t"
    )
    assert len({base, other_key, other_url}) == 3


def test_a_conversation_continues_across_tasks_and_flow_runs(prefect_api: str) -> None:
    agent = Agent(instruction="x", model="passthrough")
    first = call_in_flow(agent, "***FIXED_RESPONSE Nice to meet you, Ada.")
    second = call_in_flow(agent, "What is my name?", history=first.history_json)
    messages = json.loads(second.history_json)["messages"]
    assert [message["role"] for message in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[1]["content"][0]["text"] == "Nice to meet you, Ada."
    assert second.text == "What is my name?"  # passthrough echoes the last user message

    # The conversation is part of a request's identity, timestamps are not.
    history = parse_history(first.history_json)
    fresh = request_cache_key(agent, "passthrough", _user("q"), "t")
    with_history = request_cache_key(agent, "passthrough", [*history, *_user("q")], "t")
    restamped = parse_history(
        re.sub(r'"timestamp": "\d{4}', '"timestamp": "1999', first.history_json)
    )
    assert restamped != history
    assert fresh != with_history
    assert request_cache_key(agent, "passthrough", [*restamped, *_user("q")], "t") == with_history


@pytest.mark.logs_errors("ConfigurationError")
def test_a_malformed_history_is_refused_before_any_model_call(prefect_api: str) -> None:
    agent = Agent(instruction="x", model="passthrough")
    with pytest.raises(ValueError, match="history is not a conversation in FastAgent's JSON"):
        call_in_flow(agent, "hi", history='{"not": "a conversation"}')


@pytest.mark.logs_errors("ConfigurationError")
def test_flow_parameters_can_override_block_fields(prefect_api: str) -> None:
    Agent(instruction="x", model="slow", temperature=1).save("overridden", overwrite=True)
    result = call_in_flow(
        "overridden", "hi", overrides={"model": "passthrough", "fallback_models": []}
    )
    assert result.model == "passthrough"
    with pytest.raises(ValueError, match=r"overrides: \['temprature'\] are not agent fields"):
        call_in_flow("overridden", "hi", overrides={"temprature": 0})
    with pytest.raises(ValueError, match=r"overrides: temperature: Input should be less"):
        call_in_flow("overridden", "hi", overrides={"temperature": 9})


def test_a_model_reply_is_stored_before_the_enclosing_task_ends(prefect_api: str) -> None:
    """A later failure or a killed process must not lose a reply that already came back."""
    storage = get_current_settings().results.local_storage_path

    def stored() -> set[str]:
        return {path.name for path in storage.glob("model-request-*")}

    @task(name="encloses-an-agent-call")
    def enclosing(before: set[str]) -> set[str]:
        run_agent(Agent(instruction="x", model="passthrough"), f"stored {uuid4().hex}")
        # Still inside this task's transaction: nothing enclosing has committed yet.
        return stored() - before

    @flow(name="stored-reply-test")
    def one_call() -> set[str]:
        return enclosing(stored())

    assert len(one_call()) == 1, "the reply was not stored until its caller committed"
