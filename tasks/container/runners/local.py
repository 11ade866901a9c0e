"""Run a step's commands as host processes, for machines with no container engine.

The image is not used: the commands run with the host's tools in a temporary directory
that stands in for the step's workdir. Logs and the result say so.

Each command runs in a process group of its own, killed as a whole on timeout or
cancellation, and watched by the process's guardian: if the flow's process is killed
(``kill -9`` included), the guardian kills the command's group and removes the
temporary directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path

import anyio

from aiorch.core.guardian import Guardian, swept_temporary_directory
from aiorch.tasks.container.errors import StepTimedOut
from aiorch.tasks.container.files import copy_inputs, pack_outputs
from aiorch.tasks.container.logs import StepOutput, Stream
from aiorch.tasks.container.runners.base import Execution
from aiorch.tasks.container.spec import ContainerStep, RunnerKind

HOST_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SYSTEMROOT")
READ_SIZE = 65536
COMMAND_NOT_FOUND = 127


class LocalRunner:
    """Runs steps as host processes.

    Args:
        cache_root: Host directory holding the named cache volumes.

    Example:
        ```python
        from pathlib import Path

        from aiorch.tasks.container.runners.local import LocalRunner

        runner = LocalRunner(cache_root=Path.home() / ".cache" / "aiorch" / "volumes")
        ```
    """

    kind = RunnerKind.LOCAL
    image_used = False

    def __init__(self, cache_root: Path) -> None:
        self._cache_root = cache_root

    async def image_identity(self, image: str) -> str | None:
        """The local runner never uses an image, so nothing identifies one."""
        return None

    async def run(
        self,
        step: ContainerStep,
        secrets: Mapping[str, str],
        output: StepOutput,
        *,
        engine_cache: bool = True,
    ) -> Execution:
        """Run the commands in a temporary workdir; export outputs if all succeed."""
        output.warning(
            f"local runner: image {step.image} is NOT used; the commands run as host "
            "processes in a temporary directory"
        )
        started = time.monotonic()
        guardian = Guardian.of_process()
        with swept_temporary_directory(f"aiorch-{step.name}-") as sandbox:
            workdir = sandbox / "workdir"
            workdir.mkdir()
            copy_inputs(step, workdir)
            env = self._environment(step, secrets, workdir, output)
            try:
                with anyio.fail_after(step.timeout_seconds):
                    if step.setup:
                        output.info(
                            f"local runner: running {len(step.setup)} setup command(s); "
                            "without an image there is nothing to reuse"
                        )
                    for command in (*step.setup, *step.commands):
                        code = await _run_command(command, workdir, env, output, guardian)
                        if code != 0:
                            return Execution(code, time.monotonic() - started, None)
            except TimeoutError:
                raise StepTimedOut(step.name, step.timeout_seconds or 0) from None
            archive = pack_outputs(workdir, step.outputs, step.name)
        return Execution(0, time.monotonic() - started, archive)

    def _environment(
        self, step: ContainerStep, secrets: Mapping[str, str], workdir: Path, output: StepOutput
    ) -> dict[str, str]:
        env = {name: os.environ[name] for name in HOST_VARIABLES if name in os.environ}
        for volume in step.cache_volumes:
            location = self._cache_root / volume.name
            location.mkdir(parents=True, exist_ok=True)
            if volume.env_var:
                env[volume.env_var] = str(location)
            elif not volume.path.startswith("/"):
                link = workdir / volume.path
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(location, target_is_directory=True)
            else:
                output.warning(
                    f"local runner cannot mount cache volume {volume.name!r} at {volume.path}; "
                    "set env_var on the volume so tools find it"
                )
        return {**env, **step.env, **secrets}


async def _run_command(
    command: tuple[str, ...],
    workdir: Path,
    env: Mapping[str, str],
    output: StepOutput,
    guardian: Guardian,
) -> int:
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=workdir,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except (FileNotFoundError, PermissionError) as error:
        output.write("stderr", f"{command[0]}: {error.strerror}\n")
        return COMMAND_NOT_FOUND
    guardian.watch(process.pid)
    try:
        assert process.stdout is not None
        assert process.stderr is not None
        async with anyio.create_task_group() as group:
            group.start_soon(_pump, process.stdout, "stdout", output)
            group.start_soon(_pump, process.stderr, "stderr", output)
        return await process.wait()
    finally:
        # On timeout or cancellation the command still runs; after a normal exit, children
        # it left in its group may. The group ends with the command, as in a container.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        if process.returncode is None:
            with anyio.CancelScope(shield=True):
                await process.wait()
        guardian.forget(process.pid)
        output.flush()


async def _pump(reader: asyncio.StreamReader, stream: Stream, output: StepOutput) -> None:
    while chunk := await reader.read(READ_SIZE):
        output.write(stream, chunk)
