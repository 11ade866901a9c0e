"""Which runners are usable here, and which one ``auto`` picks.

``auto`` prefers Dagger (a session in the environment or a dagger CLI), then a reachable
Docker engine, then local processes; the reason for the choice is logged with the step.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

from pydantic import Field

from aiorch.core.errors import ConfigurationError
from aiorch.core.models import AiorchModel
from aiorch.core.settings import AiorchSettings
from aiorch.tasks.container.dagger_engine import DaggerEngine
from aiorch.tasks.container.spec import RunnerKind

if TYPE_CHECKING:
    from prefect_docker import DockerHost

    from aiorch.tasks.container.runners.base import StepRunner

DOCKER_PING_TIMEOUT_SECONDS = 3


class RunnerStatus(AiorchModel):
    """Whether one runner can be used from this process, and why (not)."""

    kind: RunnerKind
    available: bool
    detail: str = Field(description="How it was found, or why it cannot be used.")


def dagger_status(engine: DaggerEngine | None = None) -> RunnerStatus:
    """A Dagger session in the environment, or the configured CLI on PATH."""
    if os.environ.get("DAGGER_SESSION_PORT"):
        return RunnerStatus(
            kind=RunnerKind.DAGGER, available=True, detail="session from DAGGER_SESSION_PORT"
        )
    cli_name = (engine or DaggerEngine()).cli_path
    cli = shutil.which(cli_name)
    if cli:
        return RunnerStatus(kind=RunnerKind.DAGGER, available=True, detail=f"dagger CLI at {cli}")
    return RunnerStatus(
        kind=RunnerKind.DAGGER,
        available=False,
        detail=f"no dagger CLI ({cli_name!r} not found) and no DAGGER_SESSION_PORT; "
        "install the dagger CLI",
    )


def docker_status(docker_host: DockerHost | None = None) -> RunnerStatus:
    """Whether the Docker engine answers a ping, with its version."""
    from prefect_docker import DockerHost

    host = docker_host or DockerHost(timeout=DOCKER_PING_TIMEOUT_SECONDS)
    try:
        client = host.get_client()
        try:
            client.ping()
            version = client.version().get("Version", "unknown")
        finally:
            client.close()
    except Exception as error:  # the SDK raises several unrelated types for "not reachable"
        return RunnerStatus(
            kind=RunnerKind.DOCKER, available=False, detail=f"engine not reachable: {error}"
        )
    return RunnerStatus(
        kind=RunnerKind.DOCKER, available=True, detail=f"engine {version} reachable"
    )


def runner_statuses(
    docker_host: DockerHost | None = None, dagger_engine: DaggerEngine | None = None
) -> list[RunnerStatus]:
    """Every runner, in ``auto``'s order of preference, with why it is (not) usable."""
    return [
        dagger_status(dagger_engine),
        docker_status(docker_host),
        RunnerStatus(
            kind=RunnerKind.LOCAL, available=True, detail="host processes, no image isolation"
        ),
    ]


def choose_runner(
    requested: RunnerKind,
    docker_host: DockerHost | None = None,
    dagger_engine: DaggerEngine | None = None,
) -> tuple[RunnerKind, str]:
    """The runner to use and why; an explicit choice is taken as it is."""
    if requested is not RunnerKind.AUTO:
        return requested, "chosen explicitly"
    statuses = runner_statuses(docker_host, dagger_engine)
    chosen = next(status for status in statuses if status.available)
    # Everything ahead of the chosen runner in the preference order was unavailable.
    passed = "; ".join(
        f"{status.kind}: {status.detail}" for status in statuses[: statuses.index(chosen)]
    )
    reason = f"auto: {chosen.detail}" + (f" (skipped {passed})" if passed else "")
    return chosen.kind, reason


def make_runner(
    kind: RunnerKind,
    settings: AiorchSettings,
    docker_host: DockerHost | None = None,
    dagger_engine: DaggerEngine | None = None,
) -> StepRunner:
    """Build the runner for ``kind`` (never ``auto``: resolve it with choose_runner).

    Each runner's module is imported here, when a step first needs it: the Docker and
    Dagger SDKs cost about a second of start-up that a flow on the local runner (or
    one that never runs a step) should not pay.
    """
    if kind is RunnerKind.DOCKER:
        from aiorch.tasks.container.runners.docker import DockerRunner

        return DockerRunner(docker_host, pull=settings.docker_pull)
    if kind is RunnerKind.DAGGER:
        from aiorch.tasks.container.runners.dagger import DaggerRunner

        return DaggerRunner(dagger_engine or DaggerEngine())
    if kind is RunnerKind.LOCAL:
        from aiorch.tasks.container.runners.local import LocalRunner

        return LocalRunner(settings.resolved_data_dir() / "volumes")
    raise ConfigurationError("runner 'auto' must be resolved with choose_runner() first")
