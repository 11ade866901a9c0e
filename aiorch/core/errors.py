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
| circuit-open | ``CircuitOpenError`` | yes, after the wait |
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import ValidationError


class AiorchError(Exception):
    """Base of aiorch's errors: a kind, a title, a status and a retry hint."""

    kind: ClassVar[str] = "error"
    title: ClassVar[str] = "aiorch error"
    status: ClassVar[int] = 500
    retryable: bool = False
    retry_after: float | None = None

    def context(self) -> dict[str, Any]:
        """Structured facts about this failure (step, runner, model, exit code, ...)."""
        return {}


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
