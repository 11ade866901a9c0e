"""Run a step through the dagger-io SDK on a Dagger engine session.

The step becomes an ordinary Dagger pipeline: ``container().from_(image)``, the inputs as
one host directory, cache volumes, variables and secrets, then one ``with_exec`` per
command. Each command is evaluated before the next so its output reaches the logs as
the step goes. An exec error becomes the step's exit code and output; a lost session
becomes EngineUnavailable.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from uuid import uuid4

import anyio
import dagger

from aiorch.core.guardian import swept_temporary_directory
from aiorch.tasks.container.dagger_engine import DaggerEngine
from aiorch.tasks.container.dagger_session import ensure_session
from aiorch.tasks.container.errors import EngineUnavailable, MissingOutput, StepTimedOut
from aiorch.tasks.container.files import copy_inputs, pack_outputs
from aiorch.tasks.container.logs import StepOutput
from aiorch.tasks.container.runners.base import Execution
from aiorch.tasks.container.spec import ContainerStep, RunnerKind

CACHE_BUSTER = "AIORCH_CACHE_BUSTER"


class DaggerRunner:
    """Runs steps on a Dagger engine.

    Args:
        engine: The CLI and engine to use (the DaggerEngine block).

    Example:
        ```python
        from aiorch.tasks.container.dagger_engine import DaggerEngine
        from aiorch.tasks.container.runners.dagger import DaggerRunner

        runner = DaggerRunner(DaggerEngine(session_timeout_seconds=120))
        ```
    """

    kind = RunnerKind.DAGGER
    image_used = True

    def __init__(self, engine: DaggerEngine) -> None:
        self._engine = engine

    async def image_identity(self, image: str) -> str | None:
        """None: resolving a tag to a digest would cost a round trip to the engine."""
        return None

    def _config(self) -> dagger.Config:
        timeout = self._engine.request_timeout_seconds
        return dagger.Config(retry=None, timeout=dagger.Timeout(timeout) if timeout else None)

    async def run(
        self,
        step: ContainerStep,
        secrets: Mapping[str, str],
        output: StepOutput,
        *,
        engine_cache: bool = True,
    ) -> Execution:
        """Build the pipeline, run each command, export outputs if all succeed."""
        session = await anyio.to_thread.run_sync(ensure_session, self._engine)
        output.info(session.description)
        started = time.monotonic()
        with (
            session.log.attached(lambda line: output.info(f"engine: {line}"), secrets.values()),
            swept_temporary_directory(f"aiorch-{step.name}-") as staging,
        ):
            inputs_dir = staging / "inputs"
            inputs_dir.mkdir()
            copy_inputs(step, inputs_dir)
            try:
                with anyio.fail_after(step.timeout_seconds):
                    async with dagger.Connection(self._config()) as client:
                        return await self._pipeline(
                            client,
                            step,
                            secrets,
                            output,
                            inputs_dir,
                            staging,
                            started,
                            engine_cache,
                        )
            except TimeoutError:
                raise StepTimedOut(step.name, step.timeout_seconds or 0) from None
            except (dagger.ClientConnectionError, dagger.TransportError) as error:
                raise EngineUnavailable(
                    f"lost the Dagger engine: {output.mask(str(error))}", step=step.name
                ) from None

    async def _pipeline(
        self,
        client: dagger.Client,
        step: ContainerStep,
        secrets: Mapping[str, str],
        output: StepOutput,
        inputs_dir: Path,
        staging: Path,
        started: float,
        engine_cache: bool,
    ) -> Execution:
        container = client.container().from_(step.image).with_workdir(step.workdir)
        for volume in step.cache_volumes:
            mount = str(PurePosixPath(step.workdir) / volume.path)
            container = container.with_mounted_cache(mount, client.cache_volume(volume.name))
            if volume.env_var:
                container = container.with_env_variable(volume.env_var, mount)
        for name, value in step.env.items():
            container = container.with_env_variable(name, value)
        # Setup comes before the inputs, so the engine's layer cache reuses it for every
        # step with the same image, setup and env, whatever their inputs.
        for command in step.setup:
            container = container.with_exec(list(command))
        container = container.with_directory(step.workdir, client.host().directory(str(inputs_dir)))
        for name, value in secrets.items():
            secret = client.set_secret(f"aiorch-{step.name}-{name}", value)
            container = container.with_secret_variable(name, secret)
        if not engine_cache:
            # A value no earlier run had makes the engine's cache miss for every command.
            container = container.with_env_variable(CACHE_BUSTER, uuid4().hex)
        for command in step.commands:
            container = container.with_exec(list(command))
            try:
                output.write("stdout", await container.stdout())
                output.write("stderr", await container.stderr())
            except dagger.ExecError as error:
                output.write("stdout", error.stdout)
                output.write("stderr", error.stderr)
                output.flush()
                return Execution(error.exit_code, time.monotonic() - started, None)
            finally:
                output.flush()
        exported = staging / "outputs"
        for item in step.outputs:
            path = str(PurePosixPath(step.workdir) / item)
            target = exported / item
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                await container.file(path).export(str(target))
            except dagger.QueryError:
                try:
                    await container.directory(path).export(str(target))
                except dagger.QueryError:
                    raise MissingOutput(
                        f"output {item!r} was not produced under the workdir", step=step.name
                    ) from None
        return Execution(
            0, time.monotonic() - started, pack_outputs(exported, step.outputs, step.name)
        )
