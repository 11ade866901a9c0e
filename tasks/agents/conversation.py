"""Conversations: parsing, canonical form for cache keys, context-window fitting, storage.

A conversation is FastAgent's JSON history format (what ``AgentResult.history_json``
holds), so it is model-agnostic: the next turn may go to another model. Two ways carry
it between calls: pass an earlier result's ``history_json`` as ``history=``, or name a
``conversation=`` key and aiorch loads and saves it in Prefect's result storage (a
local directory by default; S3, GCS or Azure when Prefect is configured so), which
makes it available to later tasks, flow runs and machines sharing that storage.

Before each request the history is fitted to the model's context window by the agent
block's :class:`~aiorch.agent_blocks.agent.HistoryPolicy`. Token counts are estimates (about
three characters per token, rounded up, plus a few per message): conservative for
English text, so a fitted request stays inside the window.

Example:
    ```python
    from aiorch.tasks.agents.conversation import estimate_tokens, parse_history

    print(estimate_tokens(parse_history(None)))  # 0
    ```
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Literal

from fast_agent.mcp.prompt_serialization import from_json, to_json
from fast_agent.types import PromptMessageExtended
from mcp.types import TextContent
from prefect.filesystems import WritableFileSystem
from prefect.results import aget_default_result_storage
from pydantic import ConfigDict, Field, ValidationError

from aiorch.core.errors import ConfigurationError
from aiorch.core.models import AiorchModel
from aiorch.core.prefect_internals import call_block_method

CHARS_PER_TOKEN = 3
TOKENS_PER_MESSAGE = 4
# Metadata FastAgent attaches to messages that is not conversation: it differs between
# a run and its retry and must not change a request's cache key.
_VOLATILE_FIELDS = frozenset({"timestamp", "channels"})
STORE_FOLDER = "aiorch-conversations"
SUMMARY_INSTRUCTION = (
    "Summarise the conversation you are given in a few sentences. Keep names, numbers, "
    "decisions and open questions; write only the summary."
)
SUMMARY_PREFIX = "Summary of the earlier conversation: "


def parse_history(history: str | None) -> list[PromptMessageExtended]:
    """Messages of a history in FastAgent's JSON format; refuse anything else clearly."""
    if not history:
        return []
    try:
        if not isinstance(json.loads(history).get("messages"), list):
            raise ConfigurationError("no 'messages' list")
        return from_json(history)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ConfigurationError(
            "history is not a conversation in FastAgent's JSON format; pass the "
            f"history_json of an earlier AgentResult ({type(error).__name__})"
        ) from None


def text_message(role: Literal["user", "assistant"], text: str) -> PromptMessageExtended:
    """A message holding one text block."""
    return PromptMessageExtended(role=role, content=[TextContent(type="text", text=text)])


def transcript(messages: list[PromptMessageExtended]) -> str:
    """Messages as plain text, one ``role: text`` line each (what a summary is made of)."""
    return "\n".join(f"{message.role}: {message.all_text()}" for message in messages)


def dump_history(messages: list[PromptMessageExtended]) -> str:
    """FastAgent's JSON for ``messages``."""
    return to_json(messages)


def canonical_messages(messages: list[PromptMessageExtended]) -> Any:
    """The conversation's content without volatile metadata, for cache keys."""
    return _without_volatile(json.loads(to_json(messages)))


def _without_volatile(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: _without_volatile(item)
            for key, item in value.items()
            if key not in _VOLATILE_FIELDS
        }
    if isinstance(value, list):
        return [_without_volatile(item) for item in value]
    return value


def message_tokens(message: PromptMessageExtended) -> int:
    """Estimated tokens of one message, tool calls and results included."""
    text = json.dumps(canonical_messages([message]))
    return math.ceil(len(text) / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE


def estimate_tokens(messages: list[PromptMessageExtended], instruction: str = "") -> int:
    """Estimated tokens of an instruction and messages as a model sees them."""
    instruction_tokens = math.ceil(len(instruction) / CHARS_PER_TOKEN) if instruction else 0
    return instruction_tokens + sum(message_tokens(message) for message in messages)


def _turn_starts(messages: list[PromptMessageExtended]) -> list[int]:
    """Indexes where a user turn begins (a user message that is not a tool result)."""
    return [
        index
        for index, message in enumerate(messages)
        if message.role == "user" and not message.tool_results
    ]


def split_to_fit(
    history: list[PromptMessageExtended], budget: int
) -> tuple[list[PromptMessageExtended], list[PromptMessageExtended]]:
    """Split ``history`` into (dropped, kept): the newest whole turns within ``budget``.

    Turns are kept whole, so a tool call is never separated from its result.
    """
    starts = _turn_starts(history) or [0]
    for start in [0, *starts]:
        kept = history[start:]
        if estimate_tokens(kept) <= budget:
            return history[:start], kept
    return history, []


class _Turn(AiorchModel):
    model_config = ConfigDict(extra="forbid")

    start: int = Field(description="Index of the turn's first message.")
    flow_run: str | None
    prompt_sha: str


class StoredConversation(AiorchModel):
    """A conversation saved under a key, with the turns that built it."""

    model_config = ConfigDict(extra="forbid")

    history_json: str
    turns: list[_Turn] = Field(default_factory=list)

    def base_for(self, flow_run: str | None, prompt: str) -> str:
        """The history a turn should continue from.

        When the last turn was made by this flow run from this prompt, this is a retry
        of that turn: it continues from before it, so its cached model requests replay
        and the turn is not added twice.
        """
        last = self.turns[-1] if self.turns else None
        if last is not None and last.flow_run == flow_run and last.prompt_sha == _sha(prompt):
            return dump_history(parse_history(self.history_json)[: last.start])
        return self.history_json

    def with_turn(
        self, base_json: str, history_json: str, flow_run: str | None, prompt: str
    ) -> StoredConversation:
        """The conversation after a turn that continued ``base_json``."""
        start = len(parse_history(base_json))
        turns = [turn for turn in self.turns if turn.start < start]
        turns.append(_Turn(start=start, flow_run=flow_run, prompt_sha=_sha(prompt)))
        return StoredConversation(history_json=history_json, turns=turns)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _path(key: str) -> str:
    return f"{STORE_FOLDER}/{_sha('aiorch-conversation:' + key)}.json"


async def load_conversation(key: str) -> StoredConversation:
    """The conversation saved under ``key``, or an empty one."""
    storage: WritableFileSystem = await aget_default_result_storage()
    try:
        content: bytes = await call_block_method(storage, "read_path", _path(key))
    except (ValueError, FileNotFoundError, OSError):
        return StoredConversation(history_json=dump_history([]))
    try:
        return StoredConversation.model_validate_json(content)
    except ValidationError:
        raise ConfigurationError(
            f"conversation {key!r} in Prefect's result storage ({_path(key)}) is not a "
            "saved aiorch conversation; remove that file or use another key"
        ) from None


async def save_conversation(key: str, conversation: StoredConversation) -> None:
    """Save ``conversation`` under ``key`` (the last writer wins)."""
    storage: WritableFileSystem = await aget_default_result_storage()
    await call_block_method(
        storage, "write_path", _path(key), conversation.model_dump_json().encode()
    )
