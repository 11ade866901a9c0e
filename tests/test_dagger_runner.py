"""The dagger runner's own path: session provisioning, log forwarding, sharing, closing,
and code-first pipelines, through the real dagger-io SDK against the CLI double."""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

import pytest
from dagger import dag
from prefect import flow

from aiorch.core.errors import ConfigurationError
from aiorch.core.redaction import register_secret
from aiorch.tasks.container import (
    ContainerStep,
    EngineUnavailable,
    StepFailed,
    StepResult,
    run_step,
)
from aiorch.tasks.container.dagger_engine import DaggerEngine
from aiorch.tasks.container.dagger_session import (
    EngineLog,
    close_dagger_session,
    ensure_session,
    start_session,
)
from aiorch.tasks.container.pipeline import dagger_task
from aiorch.testing.prefect_server import flow_run_log_text


def test_session_start_is_bounded_by_the_timeout(
    dagger_double: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIORCH_DAGGER_DOUBLE_MODE", "hang")
    with pytest.raises(EngineUnavailable, match="did not start within 1 s"):
        start_session(DaggerEngine(session_timeout_seconds=1))


def test_session_that_exits_is_reported(
    dagger_double: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIORCH_DAGGER_DOUBLE_MODE", "exit")
    with pytest.raises(EngineUnavailable, match="exited with 1 before reporting a port"):
        start_session(DaggerEngine())


def test_missing_cli_says_how_to_fix_it() -> None:
    with pytest.raises(EngineUnavailable, match="not found; install it or set cli_path"):
        start_session(DaggerEngine(cli_path="/nonexistent/dagger"))


def test_a_session_from_the_environment_is_used_as_it_is(dagger_double: Path) -> None:
    session = start_session(DaggerEngine())
    try:
        os.environ["DAGGER_SESSION_PORT"] = str(session.port)
        os.environ["DAGGER_SESSION_TOKEN"] = session.token
        assert ensure_session(DaggerEngine()).description == "session from DAGGER_SESSION_PORT"
    finally:
        os.environ.pop("DAGGER_SESSION_PORT", None)
        os.environ.pop("DAGGER_SESSION_TOKEN", None)
        session.close()
    assert session.process.poll() == 0


def test_steps_of_a_flow_run_share_one_session_that_the_hook_closes(
    prefect_api: str, dagger_double: Path
) -> None:
    steps = [
        ContainerStep(name=f"shared-{index}", image="alpine:3.20", commands=[["echo", str(index)]])
        for index in range(2)
    ]

    @flow(
        name="dagger-session-test",
        on_completion=[close_dagger_session],
        on_failure=[close_dagger_session],
    )
    def two_steps() -> list[StepResult]:
        return [run_step(step, "dagger", cache=False) for step in steps]

    state = two_steps(return_state=True)
    assert [result.stdout_tail for result in state.result()] == ["0", "1"]
    assert "DAGGER_SESSION_PORT" not in os.environ, "the hook did not close the session"
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    logs = flow_run_log_text(run_id, expect="engine: exec echo")
    assert logs.count("started dagger session on port") == 1
    assert "engine: from alpine:3.20 (double: image not pulled)" in logs
    assert "engine: exec echo" in logs


def test_mutable_tag_warning_for_cached_steps(prefect_api: str, dagger_double: Path) -> None:
    step = ContainerStep(name="tagged", image="alpine:3.20", commands=[["true"]])

    @flow(name="dagger-tag-test")
    def cached() -> StepResult:
        result: StepResult = run_step(step, "dagger")
        return result

    state = cached(return_state=True)
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    logs = flow_run_log_text(run_id, expect="pin the image by digest")
    assert "uses image alpine:3.20 by a tag the engine cannot resolve" in logs


@dagger_task(cache_policy=None)
async def shout(word: str) -> str:
    container = (
        dag.container().from_("alpine:3.20").with_exec(["sh", "-c", f"echo {word} | tr a-z A-Z"])
    )
    return (await container.stdout()).strip()


@dagger_task
async def broken() -> str:
    return (
        await dag.container()
        .from_("alpine:3.20")
        .with_exec(["sh", "-c", "echo bad >&2; exit 4"])
        .stdout()
    )


def test_code_first_pipeline_runs_as_a_task(prefect_api: str, dagger_double: Path) -> None:
    @flow(name="code-first-test")
    def pipeline() -> str:
        # An async task called from a sync flow returns a coroutine; submit() runs it.
        return cast(str, shout.submit("hello").result())

    assert pipeline() == "HELLO"


@pytest.mark.logs_errors("StepFailed")
def test_code_first_exec_errors_become_step_failures(prefect_api: str, dagger_double: Path) -> None:
    @flow(name="code-first-failure-test")
    def pipeline() -> str:
        return cast(str, broken.submit().result())

    with pytest.raises(StepFailed) as caught:
        pipeline()
    assert caught.value.exit_code == 4
    assert caught.value.stderr_tail == "bad"


def test_code_first_needs_an_async_function() -> None:
    def not_async() -> None:
        return None

    with pytest.raises(ConfigurationError, match="make not_async 'async def'"):
        dagger_task(not_async)  # type: ignore[arg-type]


def test_engine_lines_reach_every_running_step_masked_with_all_their_secrets() -> None:
    log = EngineLog()
    first: list[str] = []
    second: list[str] = []
    with log.attached(first.append, ["alpha-secret-1"]):
        log.write("pull alpha-secret-1")
        with log.attached(second.append, ["beta-secret-22"]):
            log.write("exec with alpha-secret-1 and beta-secret-22")
        log.write("after beta-secret-22 ended")
        register_secret("gamma-registered-333")
        log.write("replayed gamma-registered-333")
    assert first == [
        "pull ********",
        "exec with ******** and ********",
        "after beta-secret-22 ended",
        "replayed ********",
    ]
    # The second step never sees the first one's secret, nor lines from before it ran.
    assert second == ["exec with ******** and ********"]
