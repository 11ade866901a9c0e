"""Why a message was not delivered, or why its handler refused it."""

from __future__ import annotations

from typing import Any

from aiorch.core.errors import AiorchError
from aiorch.tasks.resilience.problems import TYPE_PREFIX


class MessageRejected(AiorchError):
    """The message cannot be delivered as it is: the message says which field and the fix.

    It goes to the dead letters with the same reason.
    """

    kind = "message-rejected"
    title = "Message rejected"
    status = 422


class NoReply(AiorchError):
    """A request got no reply within its timeout."""

    kind = "no-reply"
    title = "No reply in time"
    status = 504
    retryable = True


class HandlerError(AiorchError):
    """A handler failed with an error of a kind this process does not know.

    ``problem`` holds the handler's RFC 9457 problem-details document as it came.
    """

    kind = "handler-error"
    title = "The message's handler failed"
    status = 502

    def __init__(self, message: str, problem: dict[str, Any]) -> None:
        super().__init__(message)
        self.problem = problem
        self.retryable = bool(problem.get("retryable", False))


class _Remote:
    """Mixin of an error rebuilt from a handler's problem details, in another process.

    Its facts are the document's ``context``; pickling rebuilds it from the document.
    """

    problem: dict[str, Any]

    def context(self) -> dict[str, Any]:
        """The facts the handler's error reported."""
        return dict(self.problem.get("context") or {})

    def __reduce__(self) -> tuple[Any, ...]:
        return (remote_error, (self.problem,))


def _subclasses(cls: type[AiorchError]) -> list[type[AiorchError]]:
    found: list[type[AiorchError]] = []
    for subclass in cls.__subclasses__():
        found += [subclass, *_subclasses(subclass)]
    return found


def _remote_class(cls: type[AiorchError]) -> type[AiorchError]:
    # A subclass per error, not a cache: callers test with isinstance, never identity.
    return type(cls.__name__, (_Remote, cls), {"__module__": cls.__module__})


def remote_error(problem: dict[str, Any]) -> AiorchError:
    """The error a handler's problem-details document describes, as its own class.

    A kind this process knows comes back as that class (``except StepFailed`` works on
    the caller's side); another kind as :class:`HandlerError`.
    """
    kind = str(problem.get("type", "")).removeprefix(TYPE_PREFIX)
    detail = str(problem.get("detail", "the handler failed"))
    known = [
        cls for cls in _subclasses(AiorchError) if cls.kind == kind and not issubclass(cls, _Remote)
    ]
    if not known:
        return HandlerError(detail, problem)
    cls = _remote_class(known[0])
    error = cls.__new__(cls)
    error.args = (detail,)
    error.retryable = bool(problem.get("retryable", False))
    error.retry_after = problem.get("retry_after")
    error.problem = problem  # type: ignore[attr-defined]
    return error
