"""Provider failures, timeouts and cancellation: typed, fast, retried only by Prefect."""

from __future__ import annotations

import time
from typing import Any

import pytest
from prefect import flow
from pydantic import SecretStr

from aiorch.agent_blocks import Agent, ModelProvider
from aiorch.core.services import free_port
from aiorch.tasks.agents.errors import AgentCallError, retry_if_retryable
from aiorch.tasks.agents.task import AgentResult, run_agent
from aiorch.tasks.resilience.breaker import CircuitOpenError
from aiorch.testing.fault_proxy import Fault, running_fault_proxy
from tests.agent_flows import call_in_flow
from tests.services import PROVIDER_ERRORS

CANARY = "sk-failure-canary-0b8e"


def _agent(base_url: str, **provider: Any) -> Agent:
    return Agent(
        instruction="x",
        model="generic.smollm2",
        provider=ModelProvider(
            kind="generic", base_url=base_url, api_key=SecretStr(CANARY), **provider
        ),
    )


@pytest.mark.logs_errors(*PROVIDER_ERRORS)
def test_a_failing_provider_is_asked_once_per_request(prefect_api: str) -> None:
    # FastAgent's OpenAI client would retry twice on its own; Prefect owns retries.
    with running_fault_proxy(default=Fault(status=503)) as proxy:
        with pytest.raises(AgentCallError) as caught:
            call_in_flow(_agent(proxy.base_url))
        assert len(proxy.received) == 1
    assert (caught.value.provider_status, caught.value.retryable) == (503, True)


@pytest.mark.logs_errors("AgentCallError")
def test_a_provider_that_does_not_answer_times_out_as_retryable(prefect_api: str) -> None:
    with running_fault_proxy(default=Fault(hang=True)) as proxy:
        started = time.monotonic()
        with pytest.raises(AgentCallError) as caught:
            call_in_flow(_agent(proxy.base_url, request_timeout_seconds=1))
        elapsed = time.monotonic() - started
    assert caught.value.retryable is True
    assert caught.value.error_type == "Timeout"
    assert "no reply within 1.0s" in str(caught.value)
    assert elapsed < 30


@pytest.mark.logs_errors(*PROVIDER_ERRORS)
def test_a_refused_connection_is_retryable_and_fails_fast(prefect_api: str) -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(AgentCallError) as caught:
        call_in_flow(_agent(f"http://127.0.0.1:{port}/v1"))
    assert caught.value.retryable is True
    assert f"connection refused: nothing listens at 127.0.0.1:{port}" in str(caught.value)
    assert caught.value.error_type is not None
    assert caught.value.error_type.endswith(": refused")
    assert CANARY not in str(caught.value)
    assert time.monotonic() - started < 30


@pytest.mark.logs_errors(*PROVIDER_ERRORS)
def test_a_host_that_does_not_resolve_is_named_and_not_retried(prefect_api: str) -> None:
    with pytest.raises(AgentCallError) as caught:
        call_in_flow(_agent("http://no-such-host.invalid/v1"))
    assert "the host 'no-such-host.invalid' does not resolve" in str(caught.value)
    assert "check base_url" in str(caught.value)
    assert caught.value.retryable is False


@pytest.mark.logs_errors(*PROVIDER_ERRORS)
def test_tls_to_a_plain_http_server_is_reported_as_tls(prefect_api: str) -> None:
    with running_fault_proxy() as proxy:
        https = proxy.base_url.replace("http://", "https://")
        with pytest.raises(AgentCallError) as caught:
            call_in_flow(_agent(https))
    assert "TLS handshake with 127.0.0.1:" in str(caught.value)
    assert caught.value.retryable is False


@pytest.mark.logs_errors("TaskRunTimeoutError", "exceeded timeout")
def test_a_prefect_task_timeout_cancels_the_model_call(prefect_api: str) -> None:
    agent = Agent(instruction="x", model="slow")  # FastAgent's test model answers in 3 s

    @flow(name="agent-timeout-test")
    def call() -> str:
        quick = run_agent.with_options(timeout_seconds=0.5)
        try:
            quick(agent, "hi")
        except TimeoutError:
            pass
        else:
            raise AssertionError("the task should have timed out")
        follow_up: AgentResult = run_agent(Agent(instruction="x", model="passthrough"), "after")
        return follow_up.text

    assert call() == "after"  # the runtime is free again after the cancelled call


@pytest.mark.logs_errors(*PROVIDER_ERRORS)
def test_prefect_retries_only_retryable_failures(prefect_api: str) -> None:
    retrying = run_agent.with_options(
        retries=2, retry_delay_seconds=0, retry_condition_fn=retry_if_retryable
    )

    @flow(name="agent-retry-condition-test")
    def call(agent: Agent) -> None:
        retrying(agent, "hi")

    with running_fault_proxy(default=Fault(status=429)) as proxy:
        with pytest.raises(AgentCallError):
            call(_agent(proxy.base_url))
        assert len(proxy.received) == 3  # first try and two retries
    with running_fault_proxy(default=Fault(status=401)) as proxy:
        with pytest.raises(AgentCallError):
            call(_agent(proxy.base_url))
        assert len(proxy.received) == 1  # not retryable: no retry


@pytest.mark.parametrize(("limit", "one_at_a_time"), [(1, True), (None, False)])
@pytest.mark.logs_errors(*PROVIDER_ERRORS)
def test_concurrent_requests_respect_the_providers_limit(
    prefect_api: str, limit: int | None, one_at_a_time: bool
) -> None:
    # Each answer takes 2 s, so unlimited requests overlap even on a loaded machine.
    with running_fault_proxy(default=Fault(status=500, delay=2.0)) as proxy:
        agent = _agent(proxy.base_url, max_concurrent_requests=limit)

        @flow(name="agent-limit-test")
        def fan_out() -> int:
            futures = [run_agent.submit(agent, f"q{index}") for index in range(3)]
            failures = 0
            for future in futures:
                try:
                    future.result()
                except AgentCallError:
                    failures += 1
            return failures

        assert fan_out() == 3
        assert len(proxy.received) == 3
        # Unlimited requests overlap (how many at once depends on the machine's load).
        assert (proxy.peak_in_flight == 1) is one_at_a_time


@pytest.mark.logs_errors("CircuitOpenError")
def test_an_open_model_breaker_moves_the_call_to_the_next_fallback(prefect_api: str) -> None:
    from aiorch.tasks.agents.breaker import model_breaker
    from aiorch.tasks.agents.endpoints import credential_fingerprint

    with running_fault_proxy(default=Fault(status=500)) as proxy:
        agent = _agent(proxy.base_url)
        agent = agent.model_copy(update={"fallback_models": ["passthrough"]})
        model_breaker(credential_fingerprint(agent.provider), "generic.smollm2").force(
            "forced_open"
        )
        result = call_in_flow(agent, "answered by the fallback")
        assert proxy.received == []  # the open breaker kept the call from the endpoint
    assert (result.model, result.failed_models) == ("passthrough", ["generic.smollm2"])


@pytest.mark.logs_errors(*PROVIDER_ERRORS, "CircuitOpenError")
def test_repeated_provider_failures_open_the_model_breaker(prefect_api: str) -> None:
    from aiorch.tasks.agents.breaker import model_breaker
    from aiorch.tasks.agents.endpoints import credential_fingerprint
    from aiorch.tasks.resilience.breaker import DEPENDENCY_BREAKER, BreakerState

    with running_fault_proxy(default=Fault(status=503)) as proxy:
        agent = _agent(proxy.base_url)
        for _ in range(DEPENDENCY_BREAKER.minimum_calls):
            with pytest.raises(AgentCallError):
                call_in_flow(agent)
        breaker = model_breaker(credential_fingerprint(agent.provider), "generic.smollm2")
        assert breaker.state() is BreakerState.OPEN
        with pytest.raises(CircuitOpenError):
            call_in_flow(agent)
        assert len(proxy.received) == DEPENDENCY_BREAKER.minimum_calls


@pytest.mark.logs_errors("AgentCallError")
def test_timeouts_count_against_the_model_breaker(prefect_api: str) -> None:
    from aiorch.tasks.agents.breaker import model_breaker
    from aiorch.tasks.agents.endpoints import credential_fingerprint
    from aiorch.tasks.resilience.breaker import DEPENDENCY_BREAKER, BreakerState

    with running_fault_proxy(default=Fault(hang=True)) as proxy:
        agent = _agent(proxy.base_url, request_timeout_seconds=0.5)
        for _ in range(DEPENDENCY_BREAKER.minimum_calls):
            with pytest.raises(AgentCallError, match=r"no reply within 0\.5s"):
                call_in_flow(agent)
        breaker = model_breaker(credential_fingerprint(agent.provider), "generic.smollm2")
        assert breaker.state() is BreakerState.OPEN
