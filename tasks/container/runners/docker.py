"""Run a step on a Docker engine through the docker SDK and prefect-docker's DockerHost.

Each command runs in a fresh container created from the previous command's committed
file system, as Dagger chains ``withExec`` calls: the file system carries over, nothing
else does. Inputs are copied in (so remote engines work too), outputs copied out, and
every container and intermediate image the step made is removed at the end, also on
timeout, failure and cancellation (found by label, not by remembering ids).
"""

from __future__ import annotations

import contextlib
import io
import tarfile
import tempfile
import threading
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal
from uuid import uuid4

import anyio
import docker.errors
from prefect_docker import DockerHost

from tasks.container.errors import (
    EngineUnavailable,
    ImageUnavailable,
    MissingOutput,
    StepError,
    StepTimedOut,
)
from tasks.container.files import inputs_tar, pack_outputs
from tasks.container.logs import StepOutput
from tasks.container.runners.base import Execution
from tasks.container.spec import ContainerStep, RunnerKind

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container
    from docker.models.images import Image

RUN_LABEL = "io.aiorch.run"
STEP_LABEL = "io.aiorch.step"
TEMP_REPOSITORY = "aiorch-tmp"
COMMAND_NOT_FOUND = 127
PullPolicy = Literal["never", "missing", "always"]


class DockerRunner:
    """Runs steps on a Docker engine.

    Args:
        docker_host: Connection settings (prefect-docker's block); the environment's
            DOCKER_HOST and friends when omitted.
        pull: ``missing`` pulls images the engine lacks, ``never`` only uses local ones,
            ``always`` pulls before every step.
        volume_prefix: Prefix of the named Docker volumes that back cache volumes.

    Example:
        ```python
        from prefect_docker import DockerHost

        from tasks.container.runners.docker import DockerRunner

        runner = DockerRunner(DockerHost(base_url="unix:///var/run/docker.sock"), pull="never")
        ```
    """

    kind = RunnerKind.DOCKER
    image_used = True

    def __init__(
        self,
        docker_host: DockerHost | None = None,
        pull: PullPolicy = "missing",
        volume_prefix: str = "aiorch-cache-",
    ) -> None:
        self._host = docker_host or DockerHost()
        self._pull = pull
        self._volume_prefix = volume_prefix

    def _client(self) -> DockerClient:
        try:
            client: DockerClient = self._host.get_client()
            client.ping()
        except Exception as error:  # the SDK raises several unrelated types for "down"
            raise EngineUnavailable(f"Docker engine not reachable: {error}") from None
        return client

    async def image_identity(self, image: str) -> str | None:
        """The engine's image id for ``image``, or None if the engine lacks it."""
        return await anyio.to_thread.run_sync(self._image_identity, image)

    def _image_identity(self, image: str) -> str | None:
        client = self._client()
        try:
            return _image_id(client.images.get(image))
        except docker.errors.ImageNotFound:
            return None
        finally:
            client.close()

    async def run(
        self,
        step: ContainerStep,
        secrets: Mapping[str, str],
        output: StepOutput,
        *,
        engine_cache: bool = True,
    ) -> Execution:
        """Run the commands in containers; export outputs if all succeed."""
        run_id = uuid4().hex[:16]
        cancelled = threading.Event()
        try:
            return await anyio.to_thread.run_sync(
                partial(self._run, step, secrets, output, run_id, cancelled),
                abandon_on_cancel=True,
            )
        finally:
            cancelled.set()
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._remove_leftovers, run_id)

    def _run(
        self,
        step: ContainerStep,
        secrets: Mapping[str, str],
        output: StepOutput,
        run_id: str,
        cancelled: threading.Event,
    ) -> Execution:
        started = time.monotonic()
        deadline = None if step.timeout_seconds is None else started + step.timeout_seconds
        client = self._client()
        try:
            image = self._ensure_image(client, step.image, output)
            for index, command in enumerate(step.commands):
                if cancelled.is_set():  # the caller gave up; leftovers are being removed
                    raise StepError("cancelled", step=step.name)
                container = self._create(client, step, secrets, image, command, run_id)
                if index == 0:
                    container.put_archive("/", inputs_tar(step))
                code = self._start_and_wait(container, step, output, deadline)
                if code != 0:
                    return Execution(code, time.monotonic() - started, None)
                if index < len(step.commands) - 1:
                    committed = container.commit(
                        repository=TEMP_REPOSITORY,
                        tag=f"{run_id}-{index}",
                        conf={"Labels": {RUN_LABEL: run_id}},
                    )
                    image = _image_id(committed)
                    container.remove(force=True)
            archive = self._export(container, step)
            return Execution(0, time.monotonic() - started, archive)
        finally:
            client.close()

    def _ensure_image(self, client: DockerClient, image: str, output: StepOutput) -> str:
        if self._pull != "always":
            try:
                return _image_id(client.images.get(image))
            except docker.errors.ImageNotFound:
                if self._pull == "never":
                    raise ImageUnavailable(
                        f"image {image!r} is not on the engine and pulling is off; build or "
                        "import it first, or use pull='missing'",
                    ) from None
        output.info(f"pulling {image}")
        try:
            return _image_id(client.images.pull(image))
        except docker.errors.APIError as error:
            raise ImageUnavailable(
                f"image {image!r} could not be pulled: {error.explanation or error}"
            ) from None

    def _create(
        self,
        client: DockerClient,
        step: ContainerStep,
        secrets: Mapping[str, str],
        image: str,
        command: tuple[str, ...],
        run_id: str,
    ) -> Container:
        volumes: dict[str, dict[str, str]] = {}
        env = dict(step.env)
        for volume in step.cache_volumes:
            mount = str(PurePosixPath(step.workdir) / volume.path)
            volumes[f"{self._volume_prefix}{volume.name}"] = {"bind": mount, "mode": "rw"}
            if volume.env_var:
                env[volume.env_var] = mount
        # Like Dagger's withExec, the command is the whole argv: the image's entrypoint
        # does not wrap it.
        container: Container = client.containers.create(
            image,
            entrypoint=[command[0]],
            command=list(command[1:]),
            working_dir=step.workdir,
            environment={**env, **secrets},
            volumes=volumes,
            labels={RUN_LABEL: run_id, STEP_LABEL: step.name},
            detach=True,
        )
        return container

    def _start_and_wait(
        self,
        container: Container,
        step: ContainerStep,
        output: StepOutput,
        deadline: float | None,
    ) -> int:
        timed_out = threading.Event()
        watchdog = None
        if deadline is not None:
            watchdog = threading.Timer(
                max(deadline - time.monotonic(), 0), _kill, (container, timed_out)
            )
            watchdog.daemon = True
        stream = container.attach(stdout=True, stderr=True, stream=True, logs=True, demux=True)
        try:
            container.start()
        except docker.errors.APIError as error:
            # The runtime refuses to exec a missing program; report it as a shell would.
            explanation = str(error.explanation or error)
            if "executable file not found" not in explanation and "no such file" not in explanation:
                raise StepError(f"container did not start: {explanation}", step=step.name) from None
            output.write("stderr", f"{explanation}\n")
            output.flush()
            return COMMAND_NOT_FOUND
        if watchdog is not None:
            watchdog.start()
        try:
            for stdout, stderr in stream:
                if stdout:
                    output.write("stdout", stdout)
                if stderr:
                    output.write("stderr", stderr)
            status = container.wait()
        finally:
            if watchdog is not None:
                watchdog.cancel()
            output.flush()
        if timed_out.is_set():
            raise StepTimedOut(step.name, step.timeout_seconds or 0)
        code: int = status["StatusCode"]
        return code

    def _export(self, container: Container, step: ContainerStep) -> bytes:
        with tempfile.TemporaryDirectory(prefix="aiorch-export-") as staging:
            root = Path(staging)
            for output in step.outputs:
                try:
                    chunks, _ = container.get_archive(str(PurePosixPath(step.workdir) / output))
                except docker.errors.NotFound:
                    raise MissingOutput(
                        f"output {output!r} was not produced under the workdir", step=step.name
                    ) from None
                parent = (root / output).parent
                parent.mkdir(parents=True, exist_ok=True)
                with tarfile.open(fileobj=io.BytesIO(b"".join(chunks)), mode="r") as archive:
                    archive.extractall(parent, filter="data")
            return pack_outputs(root, step.outputs, step.name)

    def _remove_leftovers(self, run_id: str) -> None:
        try:
            client = self._client()
        except EngineUnavailable:
            return
        try:
            label: dict[str, str | list[str] | bool] = {"label": f"{RUN_LABEL}={run_id}"}
            for container in client.containers.list(all=True, filters=label):
                container.remove(force=True)
            for image in client.images.list(filters=label):
                client.images.remove(_image_id(image), force=True)
        finally:
            client.close()


def _kill(container: Container, timed_out: threading.Event) -> None:
    timed_out.set()
    # It may have exited on its own just as the deadline passed.
    with contextlib.suppress(docker.errors.APIError):
        container.kill()


def _image_id(image: Image) -> str:
    if image.id is None:
        raise StepError(f"the engine returned image {image!r} without an id")
    return image.id
