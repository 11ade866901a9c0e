"""Test session set-up: an isolated Prefect home, and a real Prefect server on demand.

The environment is set before anything imports Prefect, because Prefect reads its
settings when it is first imported.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="aiorch-tests-"))
os.environ["PREFECT_HOME"] = str(_SESSION_HOME / "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("PREFECT_PROFILES_PATH", None)

import pytest  # noqa: E402
from prefect.events.worker import EventsWorker  # noqa: E402
from prefect.logging.handlers import APILogWorker  # noqa: E402
from prefect.settings import PREFECT_API_URL, temporary_settings  # noqa: E402

from tests.prefect_server import running_server  # noqa: E402
from tests.services import free_port  # noqa: E402


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """A real Prefect server for the whole session; the test process talks to it."""
    with (
        running_server(_SESSION_HOME / "server", free_port()) as api_url,
        temporary_settings(updates={PREFECT_API_URL: api_url}),
    ):
        yield api_url
        # Flush buffered logs and events while the server is still up, or they are lost
        # with "Unable to connect" warnings at exit.
        APILogWorker.drain_all()
        EventsWorker.drain_all()


@pytest.fixture
def scratch_dir() -> Iterator[Path]:
    """A temporary directory removed after the test."""
    path = Path(tempfile.mkdtemp(prefix="aiorch-test-", dir=_SESSION_HOME))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
