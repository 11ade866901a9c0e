"""Why a container step did not complete. Each error says whether a retry may help."""

from __future__ import annotations


class StepError(Exception):
    """Base class for container step failures."""

    retryable: bool = False

    def __init__(self, message: str, *, step: str | None = None) -> None:
        super().__init__(f"step {step!r}: {message}" if step else message)
        self.step = step


class StepFailed(StepError):
    """A command exited non-zero. The tails hold the end of its output."""

    def __init__(self, step: str, exit_code: int, stdout_tail: str, stderr_tail: str) -> None:
        detail = stderr_tail.strip().splitlines()[-1:] or stdout_tail.strip().splitlines()[-1:]
        last = f": {detail[0]}" if detail else ""
        super().__init__(f"command exited with code {exit_code}{last}", step=step)
        self.exit_code = exit_code
        self.stdout_tail = stdout_tail
        self.stderr_tail = stderr_tail


class StepTimedOut(StepError):
    """The commands ran past the step's timeout and were stopped."""

    retryable = True

    def __init__(self, step: str, timeout_seconds: float) -> None:
        super().__init__(f"timed out after {timeout_seconds:g} s and was stopped", step=step)
        self.timeout_seconds = timeout_seconds


class EngineUnavailable(StepError):
    """The engine (Dagger session, Docker daemon) could not be reached or started."""

    retryable = True


class ImageUnavailable(StepError):
    """The image is not on the engine and could not be pulled."""


class MissingOutput(StepError):
    """A declared output path did not exist when the step finished."""
