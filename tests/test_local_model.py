"""End to end with a real language model (SmolLM2 on llama.cpp) over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, cast
from uuid import UUID

import anyio
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.runtime import flow_run
from pydantic import BaseModel, SecretStr

from aiorch.agent_blocks import Agent, ModelProvider, TokenPrice
from aiorch.core.guardian import Guardian
from aiorch.core.services import answers, free_port, stop_process_group
from aiorch.core.settings import load_settings
from aiorch.tasks.agents.capabilities import model_capabilities, probe_capabilities
from aiorch.tasks.agents.conversation import parse_history
from aiorch.tasks.agents.errors import AgentCallError, retry_if_retryable
from aiorch.tasks.agents.local_model_process import ModelServerState
from aiorch.tasks.agents.task import AgentResult, run_agent
from aiorch.testing.fault_proxy import Fault, FaultProxy, running_fault_proxy
from aiorch.testing.prefect_server import flow_run_log_text
from tests.processes import descendants, wait_until_gone
from tests.services import PROVIDER_ERRORS

ROOT = Path(__file__).resolve().parents[1]
CANARY = "sk-local-canary-93ad51"
GEOGRAPHY = "You answer geography questions with one word."


class City(BaseModel):
    name: str


@pytest.fixture
def proxy(local_model: str) -> Iterator[FaultProxy]:
    """A fault proxy in front of the real model server."""
    with running_fault_proxy(upstream=local_model) as running:
        yield running


def _local_geography() -> Agent:
    """The geography agent on the ``local`` provider (whichever server that resolves to)."""
    return Agent(
        instruction=GEOGRAPHY,
        model="generic.smollm2",
        provider=ModelProvider(kind="local"),
        temperature=0,
        max_tokens=16,
    )


def _through(proxy: FaultProxy, **fields: Any) -> Agent:
    provider = ModelProvider(kind="generic", base_url=proxy.base_url, api_key=SecretStr(CANARY))
    settings: dict[str, Any] = {"temperature": 0, "max_tokens": 16, **fields}
    return Agent(instruction=GEOGRAPHY, model="generic.smollm2", provider=provider, **settings)


def test_an_agent_defined_only_by_blocks_runs_on_the_local_model(
    prefect_api: str, local_model: str
) -> None:
    prices = {"smollm2": TokenPrice(input_per_million=1.0, output_per_million=2.0)}
    ModelProvider(kind="local", prices=prices).save("local-llm", overwrite=True)
    Agent(
        instruction=GEOGRAPHY,
        model="generic.smollm2",
        provider=ModelProvider.load("local-llm"),
        temperature=0,
        max_tokens=16,
    ).save("geography", overwrite=True)

    @flow(name="local-model-blocks")
    def ask() -> AgentResult:
        result: AgentResult = run_agent("geography", "What is the capital of France?")
        return result

    result = ask()
    assert "paris" in result.text.lower()
    assert result.model == "generic.smollm2"
    assert result.stop_reason in {"endTurn", "maxTokens"}
    assert result.usage.source == "tokenizer"
    assert result.usage.input_tokens > 10
    assert 0 < result.usage.output_tokens <= 16 + 4
    assert result.estimated_cost is not None
    assert result.estimated_cost == pytest.approx(
        (result.usage.input_tokens * 1.0 + result.usage.output_tokens * 2.0) / 1e6
    )

    # Editing the block changes the next run; nothing is redeployed.
    edited = cast(Agent, Agent.load("geography"))
    edited.model = "passthrough"
    edited.save("geography", overwrite=True)
    assert ask().model == "passthrough"


def test_structured_output_from_the_local_model(prefect_api: str, proxy: FaultProxy) -> None:
    # An endpoint FastAgent has no data for: probe it once, then ask for structured output.
    provider = ModelProvider(kind="generic", base_url=proxy.base_url, api_key=SecretStr(CANARY))
    assert probe_capabilities("generic.smollm2", provider).json_mode == "object"

    @flow(name="local-model-structured")
    def ask() -> AgentResult:
        result: AgentResult = run_agent(
            _through(proxy, max_tokens=32), "Which city is the capital of France?", output_type=City
        )
        return result

    result = ask()
    assert isinstance(result.output, City)
    # llama.cpp turns JSON mode with a schema into a grammar: the request carried both.
    assert proxy.received[-1]["response_format"] == {
        "type": "json_object",
        "schema": City.model_json_schema(),
    }


def test_history_round_trip_with_the_local_model(prefect_api: str, proxy: FaultProxy) -> None:
    agent = _through(proxy, max_tokens=24)

    @flow(name="local-model-history")
    def talk() -> AgentResult:
        first: AgentResult = run_agent(agent, "Remember: the city is Paris.")
        second: AgentResult = run_agent(agent, "Which city?", history=first.history_json)
        return second

    second = talk()
    messages = parse_history(second.history_json)
    assert [message.role for message in messages] == ["user", "assistant", "user", "assistant"]
    # The second request carried the whole conversation to the model.
    sent = [message["content"] for message in proxy.received[-1]["messages"]]
    assert any("the city is Paris" in json.dumps(content) for content in sent)


@pytest.mark.logs_errors("RuntimeError")
def test_a_retried_flow_does_not_ask_the_model_again(
    prefect_api: str, proxy: FaultProxy, local_model: str
) -> None:
    agent = _through(proxy)
    attempts: list[list[AgentResult]] = []

    @flow(name="local-model-retry", retries=1)
    def two_questions() -> None:
        answers = [
            run_agent(agent, "What is the capital of France?"),
            run_agent(agent, "What is the capital of Italy?"),
        ]
        attempts.append(answers)
        if len(attempts) == 1:
            raise RuntimeError("the flow fails after both model calls completed")

    two_questions()
    assert proxy.forwarded == 2  # the retry replayed both answers from storage
    assert [answer.cache_hit for answer in attempts[1]] == [True, True]
    assert [a.text for a in attempts[1]] == [a.text for a in attempts[0]]

    # A replay reports the stored usage as saved (the local kind counts its tokens).
    local = _local_geography()
    replays: list[AgentResult] = []

    @flow(name="local-model-retry-usage", retries=1)
    def one_question() -> None:
        replays.append(run_agent(local, "What is the capital of Spain?"))
        if len(replays) == 1:
            raise RuntimeError("the flow fails after the model call completed")

    one_question()
    first, replayed = replays
    assert first.usage.total_tokens > 0
    assert (replayed.cache_hit, replayed.tokens_saved) == (True, first.usage.total_tokens)


@pytest.mark.logs_errors(*PROVIDER_ERRORS)
def test_a_rate_limited_request_is_retried_by_prefect(prefect_api: str, proxy: FaultProxy) -> None:
    proxy.plan.append(Fault(status=429, message=f"slow down {CANARY}"))
    retrying = run_agent.with_options(
        retries=2, retry_delay_seconds=0, retry_condition_fn=retry_if_retryable
    )

    @flow(name="local-model-429")
    def ask() -> tuple[str, str]:
        result: AgentResult = retrying(_through(proxy), "What is the capital of France?")
        return result.text, str(flow_run.get_id())

    text, run_id = ask()
    assert "paris" in text.lower()
    assert (len(proxy.received), proxy.forwarded) == (2, 1)
    logs = flow_run_log_text(UUID(run_id), "Finished in state Completed")
    assert "Retry 1/2" in logs
    assert CANARY not in logs


@pytest.mark.logs_errors(*PROVIDER_ERRORS)
def test_a_500_storm_falls_back_and_never_leaks_the_key(
    prefect_api: str, proxy: FaultProxy
) -> None:
    proxy.plan.extend([Fault(status=500, message=f"boom {CANARY}")] * 3)

    @flow(name="local-model-500")
    def ask() -> tuple[AgentResult, str]:
        result: AgentResult = run_agent(
            _through(proxy, fallback_models=["passthrough"]), "still answered"
        )
        return result, str(flow_run.get_id())

    result, run_id = ask()
    assert (result.model, result.failed_models) == ("passthrough", ["generic.smollm2"])
    logs = flow_run_log_text(UUID(run_id), "falling back")
    assert "falling back to 'passthrough'" in logs
    assert CANARY not in logs
    assert CANARY not in result.model_dump_json()
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(run_id)]))
        )
    assert all(CANARY not in json.dumps(artifact.data) for artifact in artifacts)

    proxy.plan.extend([Fault(status=500, message=f"boom {CANARY}")] * 3)
    with pytest.raises(AgentCallError) as caught:
        _fail_without_fallback(proxy)
    assert CANARY not in str(caught.value)
    assert caught.value.retryable is True


def _fail_without_fallback(proxy: FaultProxy) -> None:
    @flow(name="local-model-500-no-fallback")
    def ask() -> None:
        run_agent(_through(proxy), "hi")

    ask()


def test_probing_the_live_endpoint_records_its_capabilities(local_model: str) -> None:
    provider = ModelProvider(kind="generic", base_url=local_model, api_key=SecretStr("local"))
    assert model_capabilities("generic.smollm2", provider).source == "unknown"
    probed = probe_capabilities("generic.smollm2", provider)
    assert probed.structured_output is True
    assert model_capabilities("generic.smollm2", provider) == probed


def test_the_run_report_counts_tokens_and_cost_of_agent_calls(
    prefect_api: str, local_model: str
) -> None:
    from aiorch.tasks.monitoring.run_report import publish_run_report, report_rows
    from aiorch.tasks.monitoring.runs import read_run

    prices = {"smollm2": TokenPrice(input_per_million=1.0, output_per_million=2.0)}
    agent = Agent(
        instruction=GEOGRAPHY,
        model="generic.smollm2",
        provider=ModelProvider(kind="local", prices=prices),
        temperature=0,
        max_tokens=16,
    )

    @flow(name="local-model-report", on_completion=[publish_run_report])
    def ask() -> str:
        run_agent(agent, "What is the capital of Portugal?")
        return str(flow_run.get_id())

    run = anyio.run(read_run, UUID(ask()))
    rows = {row["kind"]: row for row in report_rows(run)}
    assert rows["model request"]["tokens"] > 10
    assert rows["agent call"]["tokens"] == rows["model request"]["tokens"]
    assert rows["agent call"]["cost"] > 0


TWIN_CALL = """
import sys
from prefect import flow
from pydantic import SecretStr
from aiorch import Agent, ModelProvider, run_agent

provider = ModelProvider(kind="generic", base_url=sys.argv[1], api_key=SecretStr("sk-twin"))
agent = Agent(instruction="You answer geography questions with one word.",
              model="generic.smollm2", provider=provider, temperature=0, max_tokens=16)

@flow(name="twin-agent-call")
def ask() -> str:
    print("calling", flush=True)
    result = run_agent(agent, "What is the capital of Italy?", cache_scope="tenant",
                       tenant="twins")
    return f"{int(result.cache_hit)}|{result.text}"

print("result", ask(), flush=True)
"""


def test_identical_agent_calls_in_flight_in_two_processes_ask_the_model_once(
    prefect_api: str, proxy: FaultProxy
) -> None:
    proxy.forward_gate.clear()  # the first request is held until both processes wait
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    twins = [
        subprocess.Popen(
            [sys.executable, "-c", TWIN_CALL, proxy.base_url],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for twin in twins:
            assert twin.stdout is not None
            assert _read_until(twin.stdout, "calling")
        deadline = time.monotonic() + 60
        while _chat_requests(proxy) < 1:
            assert time.monotonic() < deadline, "no model request arrived"
            time.sleep(0.1)
        # Both processes are in the call and one request is held: without the lock, the
        # second process's identical request arrives too.
        quiet_until = time.monotonic() + 5
        while time.monotonic() < quiet_until:
            assert _chat_requests(proxy) == 1, "the second process asked the model too"
            time.sleep(0.1)
    finally:
        proxy.forward_gate.set()
    outputs = [twin.communicate(timeout=120)[0] for twin in twins]
    for twin, output in zip(twins, outputs, strict=True):
        assert twin.returncode == 0, output
    results = sorted(
        line.split(" ", 1)[1]
        for output in outputs
        for line in output.splitlines()
        if line.startswith("result ")
    )
    replayed = [int(result.split("|", 1)[0]) for result in results]
    assert replayed == [0, 1]  # one asked the model, the other replayed its reply
    assert len({result.split("|", 1)[1] for result in results}) == 1
    assert _chat_requests(proxy) == 1


def _chat_requests(proxy: FaultProxy) -> int:
    return sum("chat/completions" in str(body.get("path")) for body in proxy.received)


def _read_until(stream: IO[str], marker: str) -> bool:
    return any(line.strip() == marker for line in stream)


USES_THE_MODEL = """
import sys
from aiorch.tasks.agents.local_model import LocalModelServer
print(LocalModelServer.shared().base_url(), flush=True)
sys.stdin.read()
"""


def test_one_model_server_serves_the_machine_and_stops_when_its_users_are_gone(
    local_model: str, scratch_dir: Path
) -> None:
    env = {**os.environ, "AIORCH_DATA_DIR": str(scratch_dir / "data")}
    users = [
        subprocess.Popen(
            [sys.executable, "-c", USES_THE_MODEL],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    urls = []
    for user in users:
        assert user.stdout is not None
        urls.append(user.stdout.readline().strip())
    assert len(set(urls)) == 1, urls  # the second found the first's server
    state = ModelServerState.read(scratch_dir / "data" / "local-model")
    assert state is not None
    assert state.base_url == urls[0]
    server = {state.supervisor_pid, *descendants(state.supervisor_pid)}
    assert len(server) >= 3  # the supervisor, its guardian, llama.cpp's server
    users[0].kill()  # one user is killed, the other ends normally
    users[1].communicate("", timeout=60)
    users[0].wait(timeout=30)
    took = wait_until_gone(server, deadline_seconds=load_settings().local_model_idle_seconds + 15)
    print(f"model server gone {took:.1f} s after its last user")


def test_aiorch_model_serve_is_the_server_processes_point_at_with_the_url_setting(
    local_model: str, prefect_api: str, scratch_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    served = subprocess.Popen(
        [sys.executable, "-m", "aiorch.cli", "model", "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    Guardian.of_process().watch(served.pid)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + load_settings().local_model_startup_seconds
        while not answers(f"{url}/models"):
            assert served.poll() is None, f"aiorch model serve exited with {served.returncode}"
            assert time.monotonic() < deadline, "aiorch model serve never answered"
            time.sleep(0.2)
        # The command became the server (a container's signals reach it directly).
        assert b"local_model_tools" in Path(f"/proc/{served.pid}/cmdline").read_bytes()

        monkeypatch.setenv("AIORCH_LOCAL_MODEL_URL", url)
        monkeypatch.setenv("AIORCH_DATA_DIR", str(scratch_dir / "data"))
        agent = _local_geography()

        @flow(name="local-model-by-url")
        def ask() -> AgentResult:
            result: AgentResult = run_agent(agent, "What is the capital of France?")
            return result

        result = ask()
        assert "paris" in result.text.lower()
        assert result.usage.source == "tokenizer"  # counted by that server's tokenizer
        # Nothing was started on this machine's behalf.
        assert not (scratch_dir / "data" / "local-model").exists()
    finally:
        stop_process_group(served)
        Guardian.of_process().forget(served.pid)
    assert served.returncode is not None
