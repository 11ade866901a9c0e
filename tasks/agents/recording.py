"""Record an agent call's model requests and tool calls; replay them with no model at all.

While a :class:`Recorder` is active (``with recording(recorder):``), every model request
and tool call an agent call makes is kept: what was asked (model, instruction, the
conversation, the tools offered) and what came back. A :class:`Recording` made so is a
fixture: under ``with replaying(recording):`` the same agent calls are answered from it,
in any process, without a model, a provider key or an MCP server.

A request the recording does not hold means the agent's behaviour drifted (a changed
instruction, prompt, model, tool or an earlier answer): :class:`RecordingDrift` says
which request and what differs from the one recorded at that place.

Requests are matched by identity, a hash of what decides the reply (the same fields as
the model-request cache key, without its scope), so one recording serves any run.

Example:
    ```python
    from aiorch.tasks.agents.recording import Recorder, recording

    recorder = Recorder()
    with recording(recorder):
        pass  # run_agent(...) calls here are recorded
    print(len(recorder.recording().requests))  # 0
    ```
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from mcp.types import CallToolResult, Tool
from pydantic import ConfigDict, Field

from aiorch.core.errors import AiorchError
from aiorch.core.models import AiorchModel
from aiorch.tasks.agents.requests import ModelReply

RECORDING_VERSION = "aiorch-recording-v1"


class RecordingDrift(AiorchError):
    """A replayed agent asked what its recording does not hold: its behaviour changed."""

    kind = "recording-drift"
    title = "Agent drifted from its recording"
    status = 409


class RecordedRequest(AiorchModel):
    """One model request as asked and answered."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    identity: str = Field(description="Hash of what decides the reply.")
    model: str
    instruction: str | None
    messages_json: str = Field(description="The conversation sent, FastAgent's JSON.")
    tools: list[Tool] = Field(default_factory=list, description="The tools offered.")
    reply: ModelReply | None = Field(default=None, description="None while it is asked.")


class RecordedToolCall(AiorchModel):
    """One tool call and its result."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    identity: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    result: CallToolResult


class Recording(AiorchModel):
    """What an agent call (or several) asked and got, in order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = RECORDING_VERSION
    requests: list[RecordedRequest] = Field(default_factory=list)
    tool_calls: list[RecordedToolCall] = Field(default_factory=list)


class Recorder:
    """Collects what agent calls ask and get while it is active."""

    def __init__(self) -> None:
        self._requests: list[RecordedRequest] = []
        self._tool_calls: list[RecordedToolCall] = []

    def add_request(self, request: RecordedRequest) -> None:
        """Keep one model request."""
        self._requests.append(request)

    def add_tool_call(self, call: RecordedToolCall) -> None:
        """Keep one tool call."""
        self._tool_calls.append(call)

    def recording(self) -> Recording:
        """Everything kept so far."""
        return Recording(requests=list(self._requests), tool_calls=list(self._tool_calls))


class Playback:
    """Answers agent calls from a recording; a request it does not hold is drift."""

    def __init__(self, recording: Recording) -> None:
        self._recording = recording
        self._replies = {r.identity: r.reply for r in recording.requests if r.reply is not None}
        self._results = {c.identity: c.result for c in recording.tool_calls}
        self._asked = 0

    def reply(self, asked: RecordedRequest) -> ModelReply:
        """The recorded reply to ``asked`` (its ``reply`` is ignored).

        Raises:
            RecordingDrift: the recording holds no such request; the message says how
                it differs from the request recorded at the same place.
        """
        position = self._asked
        self._asked += 1
        found = self._replies.get(asked.identity)
        if found is not None:
            return found
        recorded = self._recording.requests
        if position >= len(recorded):
            raise RecordingDrift(
                f"model request {position + 1}: the recording has only {len(recorded)}; the "
                "agent now asks more (record it again if the change is intended)"
            )
        raise RecordingDrift(
            f"model request {position + 1} differs from the recording: "
            f"{_difference(recorded[position], asked)} (record it again if the change is "
            "intended)"
        )

    def offered_tools(self) -> list[Tool]:
        """The tools the recorded agent was offered (its MCP servers are not contacted)."""
        return list(self._recording.requests[0].tools) if self._recording.requests else []

    def tool_result(self, identity: str, tool: str) -> CallToolResult:
        """The recorded result of a tool call.

        Raises:
            RecordingDrift: the recording holds no such call.
        """
        found = self._results.get(identity)
        if found is None:
            raise RecordingDrift(
                f"tool call {tool!r}: not in the recording (a new call, or other arguments)"
            )
        return found


def _difference(recorded: RecordedRequest, asked: RecordedRequest) -> str:
    if recorded.model != asked.model:
        return f"the model is {asked.model!r}, was {recorded.model!r}"
    if recorded.instruction != asked.instruction:
        return "the instruction changed"
    now, then = [t.name for t in asked.tools], [t.name for t in recorded.tools]
    if now != then:
        return f"the tools offered are {now}, were {then}"
    if recorded.messages_json != asked.messages_json:
        return "the conversation sent changed (the prompt, or an earlier reply)"
    return "the output schema or request settings changed"


_recorder: ContextVar[Recorder | None] = ContextVar("aiorch_recorder", default=None)
_playback: ContextVar[Playback | None] = ContextVar("aiorch_playback", default=None)


@contextmanager
def recording(recorder: Recorder) -> Iterator[Recorder]:
    """Record the agent calls made inside the block into ``recorder``."""
    token = _recorder.set(recorder)
    try:
        yield recorder
    finally:
        _recorder.reset(token)


@contextmanager
def replaying(source: Recording) -> Iterator[Playback]:
    """Answer the agent calls made inside the block from ``source``."""
    playback = Playback(source)
    token = _playback.set(playback)
    try:
        yield playback
    finally:
        _playback.reset(token)


def active_recorder() -> Recorder | None:
    """The recorder of the current context, if any."""
    return _recorder.get()


def active_playback() -> Playback | None:
    """The playback of the current context, if any."""
    return _playback.get()
