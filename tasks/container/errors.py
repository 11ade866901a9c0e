"""Why a container step did not complete. Each error says whether a retry may help."""

from __future__ import annotations

from typing import Any

from aiorch.core.errors import AiorchError


class StepError(AiorchError):
    """Base class for container step failures."""

    kind = "step-error"
    title = "Container step failed"
    status = 500

    def __init__(self, message: str, *, step: str | None = None) -> None:
        super().__init__(f"step {step!r}: {message}" if step else message)
        self.step = step
        self.runner: str | None = None

    def context(self) -> dict[str, Any]:
        """The step and the runner it ran on (when known)."""
        return {
            key: value for key, value in {"step": self.step, "runner": self.runner}.items() if value
        }


EX_TEMPFAIL = 75


class StepFailed(StepError):
    """A command exited non-zero. The tails hold the end of its output.

    Not retryable: a command that failed once fails again on the same input. The
    exception is exit code 75 (``EX_TEMPFAIL`` in sysexits.h, "temporary failure; the
    user is invited to retry"), which a command uses to ask for a retry.
    """

    kind = "step-failed"
    title = "A step's command exited non-zero"
    status = 422

    def __init__(self, step: str, exit_code: int, stdout_tail: str, stderr_tail: str) -> None:
        detail = stderr_tail.strip().splitlines()[-1:] or stdout_tail.strip().splitlines()[-1:]
        last = f": {detail[0]}" if detail else ""
        super().__init__(f"command exited with code {exit_code}{last}", step=step)
        self.exit_code = exit_code
        self.stdout_tail = stdout_tail
        self.stderr_tail = stderr_tail
        self.retryable = exit_code == EX_TEMPFAIL

    def context(self) -> dict[str, Any]:
        """The step, runner, exit code and the end of its output."""
        return {
            **super().context(),
            "exit_code": self.exit_code,
            "log_tail": (self.stderr_tail or self.stdout_tail).strip(),
        }


class StepTimedOut(StepError):
    """The commands ran past the step's timeout and were stopped."""

    kind = "step-timed-out"
    title = "A step ran past its timeout"
    status = 504
    retryable = True

    def __init__(self, step: str, timeout_seconds: float) -> None:
        super().__init__(f"timed out after {timeout_seconds:g} s and was stopped", step=step)
        self.timeout_seconds = timeout_seconds


class EngineUnavailable(StepError):
    """The engine (Dagger session, Docker daemon) could not be reached or started."""

    kind = "engine-unavailable"
    title = "The execution engine is unavailable"
    status = 503
    retryable = True


class ImageUnavailable(StepError):
    """The image is not on the engine and could not be pulled."""

    kind = "image-unavailable"
    title = "The step's image is unavailable"
    status = 424


class MissingOutput(StepError):
    """A declared output path did not exist when the step finished."""

    kind = "missing-output"
    title = "A declared output is missing"
    status = 422


class UnsafeOutput(StepError):
    """An output holds what cannot be restored safely.

    An absolute symlink, a link that leaves the output, a device file: rejected when the
    step runs, so no cache entry that could not be restored is stored.
    """

    kind = "unsafe-output"
    title = "An output cannot be restored safely"
    status = 422


class ExportConflict(StepError):
    """Exporting the outputs would move or replace a path aiorch did not create."""

    kind = "export-conflict"
    title = "The export destination holds something else"
    status = 409
