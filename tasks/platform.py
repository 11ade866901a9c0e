"""What this machine offers aiorch: package versions, the Prefect API in use, runners.

The survey never raises: a runner that cannot be used is reported with the reason, so
the same call answers "why is my step running locally?" on any machine.

Example:
    ```python
    from aiorch.tasks.platform import survey_platform

    for runner in survey_platform().runners:
        print(runner.kind, runner.available, runner.detail)
    ```
"""

from __future__ import annotations

import platform
from importlib import metadata

from prefect.settings import get_current_settings
from pydantic import Field

from aiorch.core.models import AiorchModel
from aiorch.tasks.container.select import RunnerStatus, runner_statuses

SURVEYED_PACKAGES = ("prefect", "prefect-docker", "dagger-io", "fast-agent-mcp", "pydantic")


class PlatformSurvey(AiorchModel):
    """The versions and runners aiorch sees from this process."""

    python: str
    packages: dict[str, str]
    prefect_api: str = Field(
        description="The Prefect API URL, or where the embedded one keeps data."
    )
    runners: list[RunnerStatus]


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


def survey_platform() -> PlatformSurvey:
    """Survey package versions, the Prefect API and the runners usable from here."""
    return PlatformSurvey(
        python=platform.python_version(),
        packages={name: _package_version(name) for name in SURVEYED_PACKAGES},
        prefect_api=_prefect_api(),
        runners=runner_statuses(),
    )
