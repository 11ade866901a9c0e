"""Controlled failures for tests and demos: fail N times, fail by chance, hang, engine down.

Counters live in files under ``AIORCH_DATA_DIR/faults/`` so they span retries, flow
runs and processes; name each fault by a key and call :func:`reset_fault` to start over.
For model endpoints that answer 429/500 storms or hang, see
:mod:`aiorch.testing.fault_proxy`.

Example:
    ```python
    from aiorch.testing.faults import FailTimes, InjectedFault, reset_fault

    reset_fault("docs-example")
    flaky = FailTimes(2, key="docs-example")
    outcomes = []
    for _ in range(3):
        try:
            flaky()
            outcomes.append("ok")
        except InjectedFault:
            outcomes.append("failed")
    print(outcomes)  # ['failed', 'failed', 'ok']
    ```
"""

from __future__ import annotations

import hashlib
import os
import random
import shlex
from pathlib import Path

from prefect_docker import DockerHost

from aiorch.core.errors import AiorchError, ConfigurationError
from aiorch.core.settings import load_settings
from aiorch.tasks.container.errors import EX_TEMPFAIL
from aiorch.tasks.container.spec import CacheVolume, ContainerStep


class InjectedFault(AiorchError):
    """A failure injected on purpose; retryable, as the transient faults it stands for."""

    kind = "injected-fault"
    title = "Injected fault"
    status = 503
    retryable = True


def _counter(key: str) -> Path:
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    folder = load_settings().resolved_data_dir() / "faults"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / digest


def reset_fault(key: str) -> None:
    """Forget how often the fault named ``key`` has fired."""
    _counter(key).unlink(missing_ok=True)


def _next_count(key: str) -> int:
    path = _counter(key)
    # O_APPEND writes of one byte are atomic, so concurrent processes count correctly.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(descriptor, b".")
    finally:
        os.close(descriptor)
    return path.stat().st_size


class FailTimes:
    """A callable that raises :class:`InjectedFault` its first ``failures`` calls."""

    def __init__(self, failures: int, *, key: str) -> None:
        if failures < 0:
            raise ConfigurationError(f"failures must be 0 or more (got {failures})")
        self.failures = failures
        self.key = key

    def __call__(self) -> None:
        """Fail, until the fault has fired ``failures`` times."""
        call = _next_count(self.key)
        if call <= self.failures:
            raise InjectedFault(f"injected failure {call} of {self.failures} ({self.key})")


class FailRandomly:
    """A callable that fails with ``probability``, from a fixed seed (repeatable)."""

    def __init__(self, probability: float, *, seed: int) -> None:
        if not 0 <= probability <= 1:
            raise ConfigurationError(f"probability must be between 0 and 1 (got {probability})")
        self.probability = probability
        self._random = random.Random(seed)

    def __call__(self) -> None:
        """Fail with the configured probability."""
        if self._random.random() < self.probability:
            raise InjectedFault(f"injected failure (probability {self.probability})")


def flaky_step(name: str, failures: int, *, image: str = "busybox") -> ContainerStep:
    """A step that exits 75 (EX_TEMPFAIL: retryable) its first ``failures`` runs.

    Its counter is a cache volume named after the step, so it survives retries;
    ``cache`` should be off when running it (a success would otherwise be replayed).
    """
    volume = f"aiorch-fault-{hashlib.sha256(name.encode()).hexdigest()[:12]}"
    script = (
        'n=$(cat "$FAULT_STATE/count" 2>/dev/null || echo 0); '
        'echo $((n + 1)) > "$FAULT_STATE/count"; '
        f'if [ "$n" -lt {failures} ]; then echo "injected failure $((n + 1))" >&2; '
        f"exit {EX_TEMPFAIL}; fi; echo recovered"
    )
    return ContainerStep(
        name=name,
        image=image,
        commands=[["sh", "-c", script]],
        cache_volumes=[CacheVolume(name=volume, path="/fault-state", env_var="FAULT_STATE")],
    )


def hanging_step(
    name: str, seconds: float, *, timeout: float, image: str = "busybox"
) -> ContainerStep:
    """A step that sleeps ``seconds``, past its ``timeout``: it fails as timed out."""
    if seconds <= timeout:
        raise ConfigurationError(
            f"seconds ({seconds}) must exceed timeout ({timeout}) to hang past it"
        )
    return ContainerStep(
        name=name,
        image=image,
        commands=[["sh", "-c", f"sleep {shlex.quote(str(seconds))}"]],
        timeout_seconds=timeout,
    )


def unreachable_docker_host() -> DockerHost:
    """A Docker connection to a socket nothing listens on: the engine is down."""
    missing = load_settings().resolved_data_dir() / "faults" / "no-docker.sock"
    return DockerHost(base_url=f"unix://{missing}")
