"""The one error taxonomy of aiorch: every error it raises on purpose derives from here.

Each class says what went wrong in a way both people and automations can use: a short
``kind`` (the last part of the problem type URI), a ``title``, an HTTP-like ``status``,
whether a retry may help (``retryable``) and, when known, how long to wait first
(``retry_after``). :mod:`aiorch.tasks.resilience.problems` renders any of them as an RFC 9457
problem-details document.

| kind | raised as | retryable |
|---|---|---|
| configuration-error | ``ConfigurationError`` (bad settings or input) | no |
| missing-block | ``MissingBlockError`` (a block named in the configuration is absent) | no |
| service-unavailable | ``ServiceUnavailable`` (a helper process did not start) | yes |
| image-build-failed | ``ImageBuildError`` (``aiorch image ...``) | no |
| promotion-refused | ``PromotionRefused`` (the evaluation did not pass a real gate) | no |
| deploy-failed | ``DeployFailed`` (``prefect deploy`` of a promotion failed) | no |
| step-failed | ``StepFailed`` (a command exited non-zero) | no |
| step-timed-out | ``StepTimedOut`` | yes |
| engine-unavailable | ``EngineUnavailable`` (Dagger or Docker unreachable) | yes |
| image-unavailable | ``ImageUnavailable`` | no |
| missing-output | ``MissingOutput`` | no |
| unsafe-output | ``UnsafeOutput`` (an absolute or escaping symlink, a device file) | no |
| export-conflict | ``ExportConflict`` (``export_to`` holds what aiorch did not make) | no |
| provider-error | ``AgentCallError`` (model provider failed) | by status |
| structured-output-invalid | ``StructuredOutputError`` | no |
| tool-error | ``ToolCallError`` (MCP server) | yes |
| recording-drift | ``RecordingDrift`` (a replayed agent asked what was not recorded) | no |
| agent-test-failed | ``AgentTestFailed`` (``assert_agent_passes``; an ``AssertionError``) | no |
| circuit-open | ``CircuitOpenError`` | yes, after the wait |
| breaker-store-unavailable | ``BreakerStoreUnavailable`` (the breakers' database) | yes |
| authentication-failed | ``AuthenticationFailed`` (the gateway: no valid token) | no |
| permission-denied | ``PermissionDenied`` (a role does not grant a route or a secret) | no |
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import ValidationError

from aiorch.core.redaction import redact


class AiorchError(Exception):
    """Base of aiorch's errors: a kind, a title, a status and a retry hint.

    The message is masked as the error is made: a secret the process has registered
    never reaches the exception, so neither Prefect's states, events and logs nor the
    pickled exception in result storage hold it. Every error survives a pickle round
    trip (Prefect persists exceptions; process pools send them between processes),
    whatever its ``__init__`` takes.
    """

    kind: ClassVar[str] = "error"
    title: ClassVar[str] = "aiorch error"
    status: ClassVar[int] = 500
    retryable: bool = False
    retry_after: float | None = None

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(arg) if isinstance(arg, str) else arg for arg in args))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_error, (type(self), self.args, dict(self.__dict__)))

    def context(self) -> dict[str, Any]:
        """Structured facts about this failure (step, runner, model, exit code, ...)."""
        return {}


def _rebuild_error(
    cls: type[AiorchError], args: tuple[object, ...], state: dict[str, Any]
) -> AiorchError:
    """Unpickle an error without calling its ``__init__`` (whose arguments differ)."""
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class ConfigurationError(AiorchError, ValueError):
    """A setting or configuration value is invalid; the message names it and the fix."""

    kind = "configuration-error"
    title = "Invalid configuration"
    status = 400


class ServiceUnavailable(AiorchError):
    """A helper process aiorch starts (the local model server, ...) did not come up."""

    kind = "service-unavailable"
    title = "Helper service unavailable"
    status = 503
    retryable = True


class PromotionRefused(AiorchError):
    """A deployment was not promoted: its evaluation failed, or asked nothing of the scores."""

    kind = "promotion-refused"
    title = "Promotion refused"
    status = 412


class DeployFailed(AiorchError):
    """``prefect deploy`` of a promotion exited non-zero; its output says why."""

    kind = "deploy-failed"
    title = "Deploy failed"
    status = 500


class PermissionDenied(AiorchError):
    """A role does not grant what was asked: a route at the gateway, a tool, a secret."""

    kind = "permission-denied"
    title = "Permission denied"
    status = 403


class ImageBuildError(AiorchError):
    """An image aiorch builds without a registry could not be built; the message says why."""

    kind = "image-build-failed"
    title = "Image build failed"
    status = 500


def validation_problems(error: ValidationError, where: str) -> str:
    """Each problem of ``error`` as ``field: message``, without the input values.

    Inputs are left out because a mistyped field may hold a secret; ``where`` names the
    whole object when a problem has no field.
    """
    return "; ".join(
        f"{'.'.join(map(str, problem['loc'])) or where}: {problem['msg']}"
        for problem in error.errors(include_input=False)
    )
