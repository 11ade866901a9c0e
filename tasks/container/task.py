"""Prefect tasks that run a ContainerStep: ``run_step`` (sync) and ``arun_step`` (async).

The public task resolves the runner and the content key, then calls an inner task that
carries the cache policy and does the work. On a cache hit the inner task's stored
record (result and outputs archive) comes back and the outer task restores the outputs
on the host, so a hit looks exactly like a run. Identical steps started concurrently run
once: the inner task's cache uses SERIALIZABLE isolation with a file lock manager.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from prefect import get_run_logger, task
from pydantic import SecretStr

from aiorch.core.errors import ConfigurationError
from aiorch.core.models import AiorchModel
from aiorch.core.redaction import register_secret
from aiorch.core.secrets import SecretRef
from aiorch.core.settings import load_settings
from aiorch.tasks.container.breaker import engine_breaker
from aiorch.tasks.container.cache_key import step_cache_key
from aiorch.tasks.container.dagger_engine import DaggerEngine
from aiorch.tasks.container.errors import StepError, StepFailed
from aiorch.tasks.container.files import check_export_destination, restore_outputs
from aiorch.tasks.container.logs import StepOutput
from aiorch.tasks.container.select import choose_runner, make_runner
from aiorch.tasks.container.slots import StepSlots
from aiorch.tasks.container.spec import ContainerStep, RunnerKind, StepResult
from aiorch.tasks.durable import CallOptions, PrecomputedKey, call_stored
from aiorch.tasks.naming import execution_run_name
from aiorch.tasks.resilience.report import report_task_failure
from aiorch.tasks.secrets import aresolve_secret
from aiorch.tasks.twins import task_pair

if TYPE_CHECKING:
    from prefect_docker import DockerHost


class StepRecord(AiorchModel):
    """What the cache stores for a step: its result and its outputs archive."""

    result: StepResult
    outputs_archive: bytes | None


def _parse_runner(runner: RunnerKind | str) -> RunnerKind:
    try:
        return RunnerKind(runner)
    except ValueError:
        choices = ", ".join(kind.value for kind in RunnerKind)
        raise ConfigurationError(f"runner: must be one of {choices} (got {runner!r})") from None


def check_access(step: ContainerStep, kind: RunnerKind) -> None:
    """Refuse, before anything runs, a step that asks for more than it may have.

    That is a secret its role does not grant, or isolation its runner cannot give.

    Raises:
        PermissionDenied: the step names a secret its role does not grant.
        ConfigurationError: the step asks for a user, a read-only root or no network
            (through its role), and ``kind`` cannot give it.
    """
    if kind is not RunnerKind.DOCKER:
        for field, asked in (("user", step.user), ("read_only_root", step.read_only_root)):
            if asked:
                raise ConfigurationError(
                    f"step {step.name!r}: {field} is enforced only by the docker runner "
                    f"({kind.value} cannot); run the step on docker, or leave {field} unset"
                )
    role = step.role
    if role is None:
        return
    for variable, secret in step.secrets.items():
        name = secret.name if isinstance(secret, SecretRef) else variable
        role.require_secret(name, f"step {step.name!r}: secrets[{variable!r}]", "step")
    if not role.network and kind is not RunnerKind.DOCKER:
        raise ConfigurationError(
            f"step {step.name!r}: the role {role.name!r} keeps the step off the network, "
            f"which only the docker runner enforces ({kind.value} cannot); run the step on "
            "docker, or grant network in the role"
        )


async def _resolve_secrets(step: ContainerStep) -> dict[str, str]:
    values = {}
    for name, secret in step.secrets.items():
        if isinstance(secret, SecretStr):
            values[name] = secret.get_secret_value()
            register_secret(values[name])
            continue
        try:
            values[name] = await aresolve_secret(secret, f"secrets[{name!r}]")
        except ConfigurationError as error:
            raise StepError(str(error), step=step.name) from None
    return values


@task(name="execute-container-step", persist_result=True, cache_policy=PrecomputedKey())
async def execute_step(
    step: ContainerStep,
    runner: RunnerKind,
    cache_key: str,
    docker_host: DockerHost | None = None,
    dagger_engine: DaggerEngine | None = None,
    engine_cache: bool = True,
) -> StepRecord:
    """Run ``step`` on ``runner``; ``cache_key`` is what the cache policy stores it under.

    Raises:
        StepFailed: a command exited non-zero.
        StepError: the step could not run (engine down, timeout, missing output, ...).
    """
    settings = load_settings()
    secrets = await _resolve_secrets(step)
    output = StepOutput(step.name, get_run_logger(), secrets.values(), settings.log_tail_lines)
    engine = make_runner(runner, settings, docker_host, dagger_engine)
    breaker = engine_breaker(runner, docker_host, dagger_engine)
    async with StepSlots.shared().taken(settings.max_parallel_steps):
        try:
            if breaker is None:
                execution = await engine.run(step, secrets, output, engine_cache=engine_cache)
            else:
                execution = await breaker.call(
                    lambda: engine.run(step, secrets, output, engine_cache=engine_cache)
                )
        except StepError as error:
            error.runner = runner.value
            raise
    result = StepResult(
        step=step.name,
        runner=runner,
        image=step.image,
        image_used=engine.image_used,
        exit_code=execution.exit_code,
        stdout_tail=output.tail("stdout"),
        stderr_tail=output.tail("stderr"),
        duration_seconds=execution.duration_seconds,
    )
    if execution.exit_code != 0:
        failure = StepFailed(step.name, execution.exit_code, result.stdout_tail, result.stderr_tail)
        failure.runner = runner.value
        raise failure
    return StepRecord(result=result, outputs_archive=execution.outputs_archive)


async def _run_step(
    step: ContainerStep,
    runner: RunnerKind | str = RunnerKind.AUTO,
    *,
    export_to: Path | None = None,
    docker_host: DockerHost | None = None,
    dagger_engine: DaggerEngine | None = None,
    cache: bool = True,
    cache_expiration: timedelta | None = None,
    refresh_cache: bool = False,
) -> StepResult:
    """Run a container step as a Prefect task, served from cache when its content matches.

    ``run_step`` is the sync task, ``arun_step`` the async one (for async flows); both
    take the same arguments. Use Prefect's own options for the rest:
    ``run_step.with_options(retries=3, retry_delay_seconds=10, timeout_seconds=900,
    tags=["build"])``, ``.submit()``, ``.map()``.

    Args:
        step: What to run.
        runner: ``auto`` (dagger, else docker, else local), or one of them explicitly.
        export_to: Host directory that receives the outputs; default
            ``AIORCH_OUTPUT_DIR/<step name>``.
        docker_host: Docker connection for the docker runner (prefect-docker's block).
        dagger_engine: Dagger CLI and engine for the dagger runner.
        cache: Reuse a result with the same content key (across runs and processes).
        cache_expiration: How long a cached result stays valid; forever if None.
        refresh_cache: Run even if a cached result exists, and replace it.

    Returns:
        The step's result; ``outputs`` maps each output to its host path.

    Raises:
        StepFailed: a command exited non-zero (exit code and output tails attached).
        ExportConflict: ``export_to`` holds something aiorch did not export there
            (checked before the step runs; nothing is moved).
        UnsafeOutput: an output cannot be restored safely (an absolute symlink, ...).
        StepError: the step could not run; ``retryable`` says whether a retry may help.

    Example:
        ```python
        from prefect import flow

        from aiorch.tasks.container import ContainerStep, run_step

        @flow
        def hello() -> str:
            step = ContainerStep(name="hello", image="busybox", commands=[["echo", "hi"]])
            return run_step(step, runner="local").stdout_tail
        ```
    """
    settings = load_settings()
    logger = get_run_logger()
    kind = _parse_runner(runner)
    if kind is RunnerKind.AUTO:
        # Only auto's choice needs telling: an explicit runner is in the execution's name.
        kind, reason = await anyio.to_thread.run_sync(
            choose_runner, kind, docker_host, dagger_engine
        )
        logger.info("step %s runs on %s: %s", step.name, kind.value, reason)
    check_access(step, kind)
    identity = None
    if cache:
        identity = await make_runner(kind, settings, docker_host, dagger_engine).image_identity(
            step.image
        )
        if identity is None and not step.image_pinned and kind is not RunnerKind.LOCAL:
            logger.warning(
                "step %s uses image %s by a tag the engine cannot resolve to an id: a cached "
                "result may outlive a moved tag; pin the image by digest (name@sha256:...)",
                step.name,
                step.image,
            )
    destination = export_to or settings.output_dir / step.name
    if step.outputs:
        # Before anything runs: a destination that cannot take the outputs fails now,
        # not after the work is done and stored.
        await anyio.to_thread.run_sync(
            check_export_destination, destination, step.outputs, step.name
        )
    # Resolved here for the key's fingerprints; the execution resolves them again
    # itself, so secret values never travel as task arguments.
    secret_values = await _resolve_secrets(step)
    key = await anyio.to_thread.run_sync(step_cache_key, step, kind, identity, secret_values)
    options = CallOptions(
        run_name=execution_run_name(step.name, kind.value),
        cache=cache,
        lock_dir=settings.resolved_data_dir() / "locks",
        cache_expiration=cache_expiration,
        refresh_cache=refresh_cache,
    )
    stored = await call_stored(
        execute_step,
        options,
        step,
        kind,
        key,
        docker_host,
        dagger_engine,
        engine_cache=cache and not refresh_cache,
    )
    record, cache_hit = stored.value, stored.cache_hit
    outputs: dict[str, Path] = {}
    if step.outputs and record.outputs_archive is not None:
        outputs = await anyio.to_thread.run_sync(
            restore_outputs, record.outputs_archive, step.outputs, destination, step.name
        )
    if cache_hit:
        logger.info("step %s served from cache (key %s); outputs restored", step.name, key)
    return record.result.model_copy(update={"outputs": outputs, "cache_hit": cache_hit})


run_step, arun_step = task_pair(
    _run_step,
    "run_step",
    "arun_step",
    name="container-step",
    task_run_name="{step.name}",
    on_failure=[report_task_failure],
)
