"""One resolver for secrets: Secret blocks, environment variables and mounted files.

Each value is read when it is used, so a rotated secret reaches the next step or tool
call with no restart; a missing one is named with the fix, never quoted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from prefect import flow
from pydantic import ValidationError

from aiorch.agent_blocks import Agent, McpServer
from aiorch.core.secrets import SecretRef, parse_secret_ref
from aiorch.tasks.agents.tools import close_mcp_connections
from aiorch.tasks.container import ContainerStep, StepError, StepResult, run_step
from tests.agent_flows import call_in_flow

SERVER = Path(__file__).parent / "mcp" / "calculator.py"
CALL_ADD = '***CALL_TOOL calc__add {"a": 2, "b": 3}'


def _run(step: ContainerStep) -> StepResult:
    @flow(name="secret-sources-step")
    def one_step() -> StepResult:
        result: StepResult = run_step(step, "local", cache=False)
        return result

    return one_step()


def _checking(expected_env: str, expected_file: str, file: Path) -> ContainerStep:
    # The command proves it got the values without printing them.
    return ContainerStep(
        name="secret-sources",
        image="busybox",
        commands=[
            [
                "sh",
                "-c",
                f'test "$FROM_ENV" = "{expected_env}" && test "$FROM_FILE" = "{expected_file}"',
            ]
        ],
        secrets={
            "FROM_ENV": SecretRef(env="AIORCH_TEST_ROTATING_SECRET"),
            "FROM_FILE": SecretRef(file=str(file)),
        },
    )


def test_a_step_reads_secrets_from_the_environment_and_files_and_sees_them_rotate(
    prefect_api: str, scratch_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mounted = scratch_dir / "run-secrets" / "db-password"
    mounted.parent.mkdir()
    mounted.write_text("file-secret-one\n")
    monkeypatch.setenv("AIORCH_TEST_ROTATING_SECRET", "env-secret-one")
    assert _run(_checking("env-secret-one", "file-secret-one", mounted)).exit_code == 0
    mounted.write_text("file-secret-two\n")
    monkeypatch.setenv("AIORCH_TEST_ROTATING_SECRET", "env-secret-two")
    assert _run(_checking("env-secret-two", "file-secret-two", mounted)).exit_code == 0


@pytest.mark.logs_errors("StepError")
def test_a_missing_variable_or_file_is_named_with_the_fix(
    prefect_api: str, scratch_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIORCH_TEST_ROTATING_SECRET", raising=False)
    with pytest.raises(
        StepError,
        match=r"secrets\['FROM_ENV'\]: the environment variable "
        r"AIORCH_TEST_ROTATING_SECRET is not set; set it where the flow runs",
    ):
        _run(_checking("x", "y", scratch_dir / "absent"))
    monkeypatch.setenv("AIORCH_TEST_ROTATING_SECRET", "present-value")
    with pytest.raises(
        StepError,
        match=r"secrets\['FROM_FILE'\]: the secret file .*absent "
        r"cannot be read \(No such file or directory\); mount the secret there",
    ):
        _run(_checking("present-value", "y", scratch_dir / "absent"))


def test_a_reference_names_exactly_one_place() -> None:
    with pytest.raises(ValidationError, match="names exactly one place"):
        SecretRef()
    with pytest.raises(ValidationError, match="names exactly one place"):
        SecretRef(env="A", file="/run/secrets/a")
    assert parse_secret_ref("env:TOKEN") == SecretRef(env="TOKEN")
    assert parse_secret_ref("file:/run/secrets/t") == SecretRef(file="/run/secrets/t")
    assert parse_secret_ref("calc-token") == SecretRef(block="calc-token")
    assert [SecretRef(block="b").source, SecretRef(env="E").source] == ["block:b", "env:E"]


def test_an_mcp_server_restarts_with_a_rotated_secret_file(
    prefect_api: str, scratch_dir: Path
) -> None:
    log = scratch_dir / "tool-calls.log"
    mounted = scratch_dir / "calc-token"
    mounted.write_text("mcp-file-secret-one")
    server = McpServer(
        name="calc",
        command=sys.executable,
        args=[str(SERVER)],
        env={"AIORCH_TEST_TOOL_LOG": str(log)},
        secret_env={"AIORCH_TEST_TOOL_SECRET": f"file:{mounted}"},
    )
    agent = Agent(instruction="x", model="passthrough", mcp_servers=[server])
    try:
        first = call_in_flow(agent, CALL_ADD)
        mounted.write_text("mcp-file-secret-two")
        second = call_in_flow(agent, CALL_ADD)
    finally:
        close_mcp_connections()
    assert log.read_text().splitlines() == [
        "add 2 3 mcp-file-secret-one",
        "add 2 3 mcp-file-secret-two",
    ]
    assert "mcp-file-secret" not in json.dumps([first.model_dump_json(), second.model_dump_json()])
