"""Retries with controlled failures, the standard error report, and its publication."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.runtime import flow_run
from pydantic import SecretStr, ValidationError

from aiorch.core.errors import ConfigurationError
from aiorch.tasks.container import ContainerStep, RunnerKind, run_step
from aiorch.tasks.container.errors import StepFailed, StepTimedOut
from aiorch.tasks.resilience.problems import problem_from_exception
from aiorch.tasks.resilience.report import FAILURE_KEY, SUMMARY_KEY, summarize_failures
from aiorch.tasks.resilience.retry import RetryPolicy
from aiorch.testing.faults import (
    FailRandomly,
    FailTimes,
    InjectedFault,
    flaky_step,
    hanging_step,
    reset_fault,
)
from aiorch.testing.prefect_server import poll_events

CANARY = "step-secret-canary-8e21c4"
NO_WAIT = RetryPolicy(retries=3, base_delay_seconds=0, max_delay_seconds=0)


def test_retries_recover_from_transient_failures(prefect_api: str) -> None:
    key = f"recover-{uuid4().hex}"
    flaky = FailTimes(2, key=key)
    attempts: list[int] = []

    @task(**NO_WAIT.task_options())
    def call() -> str:
        attempts.append(1)
        flaky()
        return "done"

    @flow
    def run() -> str:
        return call()

    assert run() == "done"
    assert len(attempts) == 3


@pytest.mark.logs_errors("ConfigurationError")
def test_non_retryable_errors_fail_at_once(prefect_api: str) -> None:
    attempts: list[int] = []

    @task(**NO_WAIT.task_options())
    def call() -> None:
        attempts.append(1)
        raise ConfigurationError("threshold must be positive")

    @flow
    def run() -> None:
        call()

    with pytest.raises(ConfigurationError):
        run()
    assert len(attempts) == 1


def test_backoff_is_exponential_capped_jittered_and_honours_retry_after() -> None:
    policy = RetryPolicy(retries=6, base_delay_seconds=1, max_delay_seconds=10, seed=7)
    assert [policy.delay(n, 1.0) for n in range(6)] == [1, 2, 4, 8, 10, 10]
    assert policy.delay(3, 0.25) == 2.0  # full jitter: a uniform share of the step
    assert policy.delay(0, 0.5, requested=30) == 30  # a longer wait asked for wins
    assert policy.model_copy(update={"jitter": False}).delay(2, 0.1) == 4
    delays = policy.task_options()["retry_delay_seconds"]
    drawn = [delays[n] for n in range(6)]
    assert all(0 <= value <= 10 for value in drawn)
    assert len(set(drawn)) > 1
    assert [delays[n] for n in range(6)] != drawn  # fresh jitter at every read


@pytest.mark.logs_errors("StepFailed")
def test_a_retried_flaky_step_recovers(prefect_api: str, scratch_dir: Path) -> None:
    step = flaky_step(f"flaky-{uuid4().hex[:8]}", failures=2)

    @flow
    def run() -> str:
        retried = run_step.with_options(**NO_WAIT.task_options())
        return retried(step, "local", cache=False).stdout_tail

    assert run().strip() == "recovered"


@pytest.mark.logs_errors("StepTimedOut")
def test_a_step_that_hangs_past_its_timeout_fails_as_timed_out(prefect_api: str) -> None:
    step = hanging_step(f"hang-{uuid4().hex[:8]}", seconds=30, timeout=0.5)

    @flow
    def run() -> None:
        run_step(step, "local", cache=False)

    with pytest.raises(StepTimedOut):
        run()


def test_random_faults_repeat_with_the_same_seed() -> None:
    def outcomes(seed: int) -> list[bool]:
        fault = FailRandomly(0.5, seed=seed)
        results = []
        for _ in range(20):
            try:
                fault()
                results.append(True)
            except InjectedFault:
                results.append(False)
        return results

    assert outcomes(3) == outcomes(3)
    assert 0 < outcomes(3).count(False) < 20


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: FailTimes(-1, key="x"), "failures must be 0 or more"),
        (lambda: FailRandomly(1.5, seed=1), "probability must be between 0 and 1"),
        (lambda: hanging_step("h", seconds=1, timeout=2), "must exceed timeout"),
    ],
)
def test_bad_fault_parameters_are_refused(build: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_bad_retry_policies_name_the_field() -> None:
    with pytest.raises(ValidationError, match="retries"):
        RetryPolicy(retries=-1)
    with pytest.raises(ValidationError, match="base_delay_seconds"):
        RetryPolicy(base_delay_seconds=-1)


def test_problem_details_follow_rfc_9457_and_hold_no_secret() -> None:
    from aiorch.core.redaction import register_secret

    register_secret(CANARY)
    error = StepFailed("build", 2, "", f"token {CANARY} rejected\nmake: *** Error 2")
    error.runner = "docker"
    problem = problem_from_exception(error, flow_run_id="f1", task_run_id="t1", task="build")
    document = problem.model_dump(mode="json")
    assert {"type", "title", "status", "detail", "instance"} <= set(document)
    assert problem.type == "urn:aiorch:problem:step-failed"
    assert (problem.status, problem.retryable) == (422, False)
    assert problem.instance == "urn:prefect:task-run:t1"
    assert problem.context["exit_code"] == 2
    assert problem.context["runner"] == "docker"
    assert CANARY not in json.dumps(document)

    unexpected = problem_from_exception(KeyError("x"))
    assert (unexpected.kind, unexpected.retryable) == ("unexpected-error", True)


@pytest.mark.logs_errors("StepFailed")
def test_a_failed_step_publishes_a_report_an_event_and_a_run_summary(prefect_api: str) -> None:
    step = ContainerStep(
        name=f"fails-{uuid4().hex[:8]}",
        image="busybox",
        commands=[["sh", "-c", 'echo "using $TOKEN" >&2; exit 3']],
        secrets={"TOKEN": SecretStr(CANARY)},
    )

    @flow(on_failure=[summarize_failures])
    def run() -> None:
        run_id_holder.append(UUID(flow_run.get_id()))
        run_step(step, "local", cache=False)

    run_id_holder: list[UUID] = []
    with pytest.raises(StepFailed):
        run()
    run_id = run_id_holder[0]
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    by_key = {artifact.key: str(artifact.data) for artifact in artifacts}
    report = by_key[FAILURE_KEY]
    assert "# A step's command exited non-zero" in report
    assert "| exit_code | 3 |" in report
    assert "urn:aiorch:problem:step-failed" in report
    assert "## Log tail" in report
    summary = by_key[SUMMARY_KEY]
    assert "1 task(s) failed for good." in summary
    assert f"| {step.name} | step-failed | 422 | no |" in summary
    assert all(CANARY not in text for text in by_key.values())

    task_run_id = json.loads(report.split("```json", 1)[1].split("```", 1)[0])["task_run_id"]
    reported = poll_events(
        prefect_api,
        f"prefect.task-run.{task_run_id}",
        count=1,
        names=["aiorch.failure.reported"],
    )
    assert len(reported) == 1
    assert reported[0]["payload"]["type"] == "urn:aiorch:problem:step-failed"
    assert CANARY not in json.dumps(reported[0])


def test_fault_counters_reset() -> None:
    key = f"reset-{uuid4().hex}"
    fault = FailTimes(1, key=key)
    with pytest.raises(InjectedFault):
        fault()
    fault()
    reset_fault(key)
    with pytest.raises(InjectedFault):
        fault()


@pytest.mark.logs_errors("CircuitOpenError", "EngineUnavailable")
def test_an_engine_that_is_down_opens_its_breaker(prefect_api: str) -> None:
    from aiorch.tasks.container.breaker import engine_breaker
    from aiorch.tasks.container.errors import EngineUnavailable
    from aiorch.tasks.resilience.breaker import DEPENDENCY_BREAKER, BreakerState, CircuitOpenError
    from aiorch.testing.faults import unreachable_docker_host

    host = unreachable_docker_host()
    step = ContainerStep(name="engine-down", image="busybox", commands=[["true"]])

    @flow
    def run() -> None:
        run_step(step, "docker", docker_host=host, cache=False)

    breaker = engine_breaker(RunnerKind.DOCKER, host, None)
    assert breaker is not None
    breaker.force("closed")
    for _ in range(DEPENDENCY_BREAKER.minimum_calls):
        with pytest.raises(EngineUnavailable):
            run()
    assert breaker.state() is BreakerState.OPEN
    with pytest.raises(CircuitOpenError) as refused:
        run()
    assert refused.value.retry_after is not None
    assert refused.value.retry_after > 0
