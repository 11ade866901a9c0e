"""What this machine offers aiorch: package versions, the Prefect API in use, engines.

The survey never raises: an engine that cannot be reached is reported with the reason,
so the same call answers "why is my step running locally?" on any machine.

Example:
    ```python
    from tasks.platform import survey_platform

    for engine in survey_platform().engines:
        print(engine.name, engine.available, engine.detail)
    ```
"""

from __future__ import annotations

import os
import platform
import shutil
from importlib import metadata
from typing import Literal

from prefect.settings import get_current_settings
from pydantic import BaseModel, Field

SURVEYED_PACKAGES = ("prefect", "prefect-docker", "dagger-io", "fast-agent-mcp", "pydantic")
DOCKER_PING_TIMEOUT_SECONDS = 3


class EngineStatus(BaseModel):
    """Whether one execution engine can be used from this process, and why (not)."""

    name: Literal["dagger", "docker", "local"]
    available: bool
    detail: str = Field(description="How it was found, or why it cannot be used.")


class PlatformSurvey(BaseModel):
    """The versions and engines aiorch sees from this process."""

    python: str
    packages: dict[str, str]
    prefect_api: str = Field(
        description="The Prefect API URL, or where the embedded one keeps data."
    )
    engines: list[EngineStatus]


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _prefect_api() -> str:
    settings = get_current_settings()
    if settings.api.url:
        return settings.api.url
    return f"embedded server, data in {settings.home}"


def _dagger_status() -> EngineStatus:
    if os.environ.get("DAGGER_SESSION_PORT"):
        return EngineStatus(
            name="dagger", available=True, detail="session from DAGGER_SESSION_PORT"
        )
    cli = os.environ.get("_EXPERIMENTAL_DAGGER_CLI_BIN") or shutil.which("dagger")
    if cli:
        return EngineStatus(name="dagger", available=True, detail=f"dagger CLI at {cli}")
    return EngineStatus(
        name="dagger",
        available=False,
        detail="no dagger CLI on PATH and no DAGGER_SESSION_PORT; install the dagger CLI",
    )


def _docker_status() -> EngineStatus:
    import docker  # deferred: importing the SDK costs ~0.3 s and only the survey needs it here

    try:
        client = docker.from_env(timeout=DOCKER_PING_TIMEOUT_SECONDS)
        try:
            client.ping()
            version = client.version().get("Version", "unknown")
        finally:
            client.close()
    except Exception as error:  # the SDK raises several unrelated types for "not reachable"
        return EngineStatus(name="docker", available=False, detail=f"engine not reachable: {error}")
    return EngineStatus(name="docker", available=True, detail=f"engine {version} reachable")


def survey_platform() -> PlatformSurvey:
    """Survey package versions, the Prefect API and the engines reachable from here."""
    return PlatformSurvey(
        python=platform.python_version(),
        packages={name: _package_version(name) for name in SURVEYED_PACKAGES},
        prefect_api=_prefect_api(),
        engines=[
            _dagger_status(),
            _docker_status(),
            EngineStatus(name="local", available=True, detail="host processes, no image isolation"),
        ],
    )
