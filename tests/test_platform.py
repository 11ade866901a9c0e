from __future__ import annotations

from importlib import metadata

import docker
import pytest

from aiorch.core.services import free_port
from aiorch.tasks.container.select import RunnerStatus
from aiorch.tasks.platform import survey_platform


def _status(kind: str) -> RunnerStatus:
    return {str(status.kind): status for status in survey_platform().runners}[kind]


def test_survey_reports_installed_versions() -> None:
    survey = survey_platform()
    assert survey.packages["prefect"] == metadata.version("prefect")
    assert survey.packages["fast-agent-mcp"].startswith("0.10.")
    assert survey.python.startswith("3.1")


def test_survey_sees_a_running_docker_engine(docker_client: docker.DockerClient) -> None:
    docker_status = _status("docker")
    assert docker_status.available, docker_status.detail
    assert "reachable" in docker_status.detail


def test_survey_explains_an_unreachable_docker_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{free_port()}")
    docker_status = _status("docker")
    assert not docker_status.available
    assert docker_status.detail.startswith("engine not reachable")


def test_survey_explains_a_missing_dagger_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGGER_SESSION_PORT", raising=False)
    monkeypatch.delenv("_EXPERIMENTAL_DAGGER_CLI_BIN", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    dagger_status = _status("dagger")
    assert not dagger_status.available
    assert "install the dagger CLI" in dagger_status.detail


def test_survey_uses_a_dagger_session_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGGER_SESSION_PORT", "41234")
    dagger_status = _status("dagger")
    assert dagger_status.available
    assert "DAGGER_SESSION_PORT" in dagger_status.detail


def test_local_engine_is_always_available() -> None:
    local = _status("local")
    assert local.available
    assert "no image isolation" in local.detail
