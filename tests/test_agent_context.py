"""Conversation context: history policies, stored conversations, switching models."""

from __future__ import annotations

import json
from typing import Any, Literal

import anyio
import pytest
from prefect import flow

from aiorch.agent_blocks import Agent, HistoryPolicy
from aiorch.tasks.agents.conversation import (
    SUMMARY_PREFIX,
    estimate_tokens,
    load_conversation,
    parse_history,
    split_to_fit,
)
from aiorch.tasks.agents.task import AgentResult, run_agent
from tests.agent_flows import call_in_flow


def _stored_messages(key: str) -> int:
    return len(parse_history(anyio.run(load_conversation, key).history_json))


def _long_history(turns: int) -> str:
    messages: list[dict[str, Any]] = []
    for index in range(turns):
        for role in ("user", "assistant"):
            text = f"{role} turn {index}: " + "words " * 60
            messages.append({"role": role, "content": [{"type": "text", "text": text}]})
    return json.dumps({"messages": messages})


def test_split_keeps_the_newest_whole_turns_within_the_budget() -> None:
    history = parse_history(_long_history(6))
    one_turn = estimate_tokens(history[-2:])
    dropped, kept = split_to_fit(history, one_turn * 2)
    assert (len(kept), len(dropped)) == (4, 8)
    assert kept == history[-4:]
    assert split_to_fit(history, 10**6) == ([], history)


def test_truncation_fits_the_window_and_keeps_the_full_history(prefect_api: str) -> None:
    agent = Agent(
        instruction="x",
        model="passthrough",
        max_tokens=64,
        history=HistoryPolicy(strategy="truncate", max_context_tokens=600),
    )
    result = call_in_flow(agent, "next", history=_long_history(10))
    assert result.history_dropped_messages >= 14
    # Truncation shapes what is sent; the stored conversation loses nothing.
    assert len(json.loads(result.history_json)["messages"]) == 22
    assert result.requests == 1


def test_summarising_replaces_old_turns_with_a_summary(prefect_api: str) -> None:
    agent = Agent(
        instruction="x",
        model="passthrough",
        max_tokens=64,
        history=HistoryPolicy(strategy="summarize", max_context_tokens=700),
    )
    result = call_in_flow(agent, "next", history=_long_history(10))
    messages = json.loads(result.history_json)["messages"]
    assert result.requests == 2  # the summary is a model request of its own
    assert messages[0]["content"][0]["text"].startswith(SUMMARY_PREFIX)
    assert len(messages) < 22
    assert messages[-2]["content"][0]["text"] == "next"
    assert messages[-1]["role"] == "assistant"


def test_keep_sends_everything(prefect_api: str) -> None:
    agent = Agent(instruction="x", model="passthrough", history=HistoryPolicy(strategy="keep"))
    result = call_in_flow(agent, "next", history=_long_history(10))
    assert result.history_dropped_messages == 0


def test_a_stored_conversation_continues_across_flow_runs(prefect_api: str) -> None:
    agent = Agent(instruction="x", model="passthrough")
    key = "support-ticket-4711"
    call_in_flow(agent, "***FIXED_RESPONSE Hello Ada.", conversation=key)
    second = call_in_flow(agent, "What did you say?", conversation=key)
    roles = [message["role"] for message in json.loads(second.history_json)["messages"]]
    assert roles == ["user", "assistant", "user", "assistant"]

    assert _stored_messages(key) == 4


@pytest.mark.logs_errors("RuntimeError")
def test_a_retried_turn_is_not_added_twice_to_a_stored_conversation(prefect_api: str) -> None:
    agent = Agent(instruction="x", model="passthrough")
    key = "retried-conversation"
    attempts: list[AgentResult] = []

    @flow(name="agent-context-retry", retries=1)
    def flaky() -> None:
        attempts.append(run_agent(agent, "***FIXED_RESPONSE once", conversation=key))
        if len(attempts) == 1:
            raise RuntimeError("fails after the turn was saved")

    flaky()
    assert [result.cache_hit for result in attempts] == [False, True]

    assert _stored_messages(key) == 2


def test_switching_models_mid_conversation_keeps_the_history(prefect_api: str) -> None:
    agent = Agent(instruction="x", model="passthrough")
    first = call_in_flow(agent, "***FIXED_RESPONSE from the first model")
    second = call_in_flow(agent, "still there?", model="silent", history=first.history_json)
    assert (first.model, second.model) == ("passthrough", "silent")
    messages = json.loads(second.history_json)["messages"]
    assert messages[1]["content"][0]["text"] == "from the first model"
    assert len(messages) == 4


@pytest.mark.logs_errors("ConfigurationError")
def test_history_and_conversation_together_are_refused(prefect_api: str) -> None:
    agent = Agent(instruction="x", model="passthrough")
    with pytest.raises(ValueError, match="pass history= or conversation=, not both"):
        call_in_flow(agent, "hi", history=_long_history(1), conversation="k")


@pytest.mark.parametrize(("strategy", "sent"), [("keep", 21), ("truncate", 3)])
def test_the_model_receives_the_fitted_conversation(
    prefect_api: str, strategy: Literal["keep", "truncate"], sent: int
) -> None:
    # FastAgent's playback model answers a fresh request with how many messages it got.
    history = _long_history(10)
    last_turn = estimate_tokens(parse_history(history)[-2:])
    window = last_turn + 64 + 60  # one turn, the reply's reserve, the prompt and instruction
    agent = Agent(
        instruction="x",
        model="playback",
        max_tokens=64,
        history=HistoryPolicy(strategy=strategy, max_context_tokens=window),
    )
    result = call_in_flow(agent, "next", history=history)
    assert result.text == f"HISTORY LOADED ({sent}) messages"
    assert result.history_dropped_messages == 21 - sent
