"""Typed errors for agent calls, from FastAgent replies that carry a failure.

FastAgent returns most provider failures (HTTP 429/500/401, timeouts, refused
connections) as ordinary replies with stop reason ERROR and a
``fast-agent-provider-error`` channel. aiorch turns them into exceptions that say
whether a retry may help, so Prefect's retries (not FastAgent's) decide what happens.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prefect.client.schemas.objects import State

from aiorch.core.errors import AiorchError
from aiorch.core.redaction import mask

if TYPE_CHECKING:
    from fast_agent.types import PromptMessageExtended

PROVIDER_ERROR_CHANNEL = "fast-agent-provider-error"
ERROR_CHANNEL = "fast-agent-error"
RETRYABLE_STATUS = frozenset({408, 409, 429})
# How the OpenAI SDK reports every way of not reaching a server (refused, DNS, TLS, slow).
UNREACHED_TYPES = frozenset({"APITimeoutError", "APIConnectionError"})
RETRYABLE_TYPES = UNREACHED_TYPES | {"RateLimitError"}


class AgentError(AiorchError):
    """An agent call could not complete; ``retryable`` says whether trying again may help."""

    kind = "agent-error"
    title = "Agent call failed"
    status = 500

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class AgentCallError(AgentError):
    """A model request failed (the provider refused, failed, timed out or was unreachable).

    Retryable failures move an agent call on to its next fallback model.
    """

    kind = "provider-error"
    title = "The model provider failed"
    status = 502

    def __init__(
        self,
        message: str,
        *,
        model: str,
        retryable: bool,
        status: int | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(f"model {model!r}: {message}", retryable=retryable)
        self.model = model
        self.provider_status = status
        self.error_type = error_type

    def context(self) -> dict[str, Any]:
        """The model and what the provider answered."""
        facts = {"model": self.model, "provider_status": self.provider_status}
        facts["error_type"] = self.error_type
        return {key: value for key, value in facts.items() if value is not None}


class StructuredOutputError(AgentError):
    """The model's reply does not satisfy the requested output schema."""

    kind = "structured-output-invalid"
    title = "The reply does not fit the output schema"
    status = 422

    def __init__(self, message: str, *, model: str) -> None:
        super().__init__(f"model {model!r}: {message}", retryable=False)
        self.model = model

    def context(self) -> dict[str, Any]:
        """The model that answered."""
        return {"model": self.model}


class ToolCallError(AgentError):
    """An MCP server could not be reached, or a tool call did not finish in time."""

    kind = "tool-error"
    title = "An MCP tool call failed"
    status = 502

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


def _channel_texts(reply: PromptMessageExtended, channel: str) -> list[str]:
    blocks = (reply.channels or {}).get(channel, [])
    return [text for block in blocks if (text := getattr(block, "text", None))]


def error_from_reply(
    reply: PromptMessageExtended, model: str, secrets: Iterable[str] = ()
) -> AgentCallError | None:
    """The failure a reply carries, or None for a normal reply."""
    from fast_agent.types.llm_stop_reason import LlmStopReason

    if reply.stop_reason != LlmStopReason.ERROR:
        return None
    status: int | None = None
    error_type: str | None = None
    for text in _channel_texts(reply, PROVIDER_ERROR_CHANNEL):
        try:
            detail = json.loads(text)
        except json.JSONDecodeError:
            continue
        status, error_type = detail.get("status"), detail.get("error_type")
    message = " ".join(_channel_texts(reply, ERROR_CHANNEL)) or "the provider returned an error"
    retryable = (status is not None and (status in RETRYABLE_STATUS or status >= 500)) or (
        status is None and error_type in RETRYABLE_TYPES
    )
    return AgentCallError(
        mask(message, list(secrets)),
        model=model,
        retryable=retryable,
        status=status,
        error_type=error_type,
    )


def retry_if_retryable(task: Any, task_run: Any, state: State[Any]) -> bool:
    """A ``retry_condition_fn`` for agent tasks: retry only failures marked retryable.

    Example:
        ```python
        from aiorch.tasks.agents.errors import retry_if_retryable
        from aiorch.tasks.agents.task import run_agent

        resilient = run_agent.with_options(retries=3, retry_condition_fn=retry_if_retryable)
        ```
    """
    try:
        state.result()
    except AgentError as error:
        return error.retryable
    except Exception:  # anything untyped may be transient; let Prefect's retries decide
        return True
    return False
