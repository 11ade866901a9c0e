"""Run a step on a Docker engine through the docker SDK and prefect-docker's DockerHost.

Each command runs in a fresh container created from the previous command's committed
file system, as Dagger chains ``withExec`` calls: the file system carries over, nothing
else does. A step's ``setup`` commands are committed to an ``aiorch-prepared`` image
named by a hash of image, setup and env, which later steps reuse instead of running them
again (remove them with ``docker image prune -a --filter label=io.aiorch.prepared``).
Inputs are copied in (so remote engines work too), outputs copied out, and every
container and intermediate image the step made is removed at the end, also on timeout,
failure and cancellation: by id as the run made them, and, when the run was cancelled
while its thread was still at work or a removal failed, by the run's label.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
import threading
import time
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Literal
from uuid import uuid4

import anyio
import docker.errors
import requests.exceptions
from docker.types import Mount
from prefect_docker import DockerHost

from aiorch.core.guardian import Guardian, swept_temporary_directory
from aiorch.tasks.container.errors import (
    EngineUnavailable,
    ImageUnavailable,
    MissingOutput,
    StepError,
    StepTimedOut,
)
from aiorch.tasks.container.files import inputs_tar, pack_outputs, unsafe_output
from aiorch.tasks.container.logs import StepOutput
from aiorch.tasks.container.runners.base import Execution
from aiorch.tasks.container.spec import ContainerStep, RunnerKind

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container
    from docker.models.images import Image

RUN_LABEL = "io.aiorch.run"
STEP_LABEL = "io.aiorch.step"
TEMP_REPOSITORY = "aiorch-tmp"
PREPARED_REPOSITORY = "aiorch-prepared"
PREPARED_LABEL = "io.aiorch.prepared"
COMMAND_NOT_FOUND = 127
DOCKER_ENVIRONMENT = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")
PullPolicy = Literal["never", "missing", "always"]


_preparing: dict[str, threading.Lock] = {}
# One client per worker thread and engine: a new client costs a version negotiation and a
# ping (two round trips), which was most of a short step's overhead; docker-py's client is
# a requests session, not documented as safe to share between threads.
_thread_clients = threading.local()


class _Created:
    """What one step run made on the engine, so the normal path removes it by id.

    With a local engine (a unix socket), each container is also handed to the process's
    guardian, which removes it if the flow process is killed while it exists.
    """

    def __init__(self, socket_path: str | None) -> None:
        self.containers: list[Container] = []
        self.images: list[str] = []
        self.removed = False
        self._socket_path = socket_path

    def add(self, container: Container) -> None:
        """A container this run made."""
        self.containers.append(container)
        if self._socket_path is not None and container.id is not None:
            Guardian.of_process().watch_container(container.id, self._socket_path)

    def drop(self, container: Container) -> None:
        """A container this run removed."""
        self.containers.remove(container)
        self._forget(container)

    def forget_all(self) -> None:
        """Every container is gone (removed by id or by the label sweep)."""
        for container in self.containers:
            self._forget(container)

    def _forget(self, container: Container) -> None:
        if self._socket_path is not None and container.id is not None:
            Guardian.of_process().forget_container(container.id)


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

        from aiorch.tasks.container.runners.docker import DockerRunner

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
        """This thread's client for the host, made (and pinged) on first use."""
        clients: dict[str, DockerClient] = _thread_clients.__dict__.setdefault("by_host", {})
        key = _host_key(self._host)
        client = clients.get(key)
        if client is None:
            try:
                client = self._host.get_client()
                client.ping()
            except Exception as error:  # the SDK raises several unrelated types for "down"
                raise EngineUnavailable(f"Docker engine not reachable: {error}") from None
            clients[key] = client
        return client

    def _forget_client(self) -> None:
        """Drop this thread's client after the engine went away; the next step reconnects."""
        clients: dict[str, DockerClient] = _thread_clients.__dict__.get("by_host", {})
        client = clients.pop(_host_key(self._host), None)
        if client is not None:
            client.close()

    async def image_identity(self, image: str) -> str | None:
        """The engine's image id for ``image``, or None if the engine lacks it."""
        return await anyio.to_thread.run_sync(self._image_identity, image)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[None]:
        """A lost engine connection becomes EngineUnavailable; this thread's client goes."""
        try:
            yield
        except requests.exceptions.ConnectionError as error:
            self._forget_client()
            raise EngineUnavailable(f"Docker engine connection lost: {error}") from None

    def _image_identity(self, image: str) -> str | None:
        client = self._client()
        with self._connection():
            try:
                return _image_id(client.images.get(image))
            except docker.errors.ImageNotFound:
                return None

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
        created = _Created(_unix_socket(self._host))
        try:
            return await anyio.to_thread.run_sync(
                partial(self._run, step, secrets, output, run_id, cancelled, created),
                abandon_on_cancel=True,
            )
        finally:
            cancelled.set()
            if not created.removed:
                # Cancelled (the thread may still be creating things) or the removal by id
                # failed: sweep everything labelled with this run.
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self._remove_leftovers, run_id)
            created.forget_all()

    def _run(
        self,
        step: ContainerStep,
        secrets: Mapping[str, str],
        output: StepOutput,
        run_id: str,
        cancelled: threading.Event,
        created: _Created,
    ) -> Execution:
        started = time.monotonic()
        deadline = None if step.timeout_seconds is None else started + step.timeout_seconds
        client = self._client()
        with self._connection():
            try:
                image = self._ensure_image(client, step.image, output)
                if step.setup:
                    prepared = self._prepared(
                        client, step, image, output, run_id, deadline, cancelled, created
                    )
                    if isinstance(prepared, int):
                        return Execution(prepared, time.monotonic() - started, None)
                    image = prepared
                code, container = self._chain(
                    client,
                    step,
                    step.commands,
                    secrets,
                    image,
                    output,
                    run_id,
                    deadline,
                    cancelled,
                    created,
                    with_inputs=True,
                )
                if code != 0:
                    return Execution(code, time.monotonic() - started, None)
                archive = self._export(container, step)
                return Execution(0, time.monotonic() - started, archive)
            finally:
                # Also after a cancellation: what this thread made after the sweep is its own.
                _remove_created(client, created)

    def _chain(
        self,
        client: DockerClient,
        step: ContainerStep,
        commands: tuple[tuple[str, ...], ...],
        secrets: Mapping[str, str],
        image: str,
        output: StepOutput,
        run_id: str,
        deadline: float | None,
        cancelled: threading.Event,
        created: _Created,
        *,
        with_inputs: bool,
    ) -> tuple[int, Container]:
        """Run commands one container each, committing between them; the last is kept.

        ``with_inputs`` marks the step's own commands (not setup): they get the inputs and
        the step's isolation (user, read-only root, no network).
        """
        previous: Container | None = None
        if with_inputs and step.read_only_root:
            image = self._with_inputs(client, step, image, run_id, created)
        for index, command in enumerate(commands):
            if cancelled.is_set():  # the caller gave up; leftovers are being removed
                raise StepError("cancelled", step=step.name)
            container = self._create(
                client, step, secrets, image, command, run_id, isolated=with_inputs, after=previous
            )
            created.add(container)
            if previous is not None:
                # Only now: the new container holds the workdir volume a read-only step
                # passes on, so removing the previous one cannot remove the volume.
                previous.remove(force=True)
                created.drop(previous)
            # Without inputs or an owner there is nothing to copy: the engine makes the workdir.
            owned = step.inputs or step.user is not None
            if index == 0 and with_inputs and owned and not step.read_only_root:
                container.put_archive("/", inputs_tar(step))
            code = self._start_and_wait(container, step, output, deadline)
            if code != 0 or index == len(commands) - 1:
                return code, container
            committed = container.commit(
                repository=TEMP_REPOSITORY,
                tag=f"{run_id}-{index}",
                conf={"Labels": {RUN_LABEL: run_id}},
            )
            image = _image_id(committed)
            created.images.append(image)
            previous = container
        raise StepError("a step needs at least one command", step=step.name)

    def _with_inputs(
        self, client: DockerClient, step: ContainerStep, image: str, run_id: str, created: _Created
    ) -> str:
        """``image`` with the workdir and inputs committed in, for a read-only step.

        A read-only root takes no archive outside its volumes, and a new volume takes
        its content and owner from the image: so the inputs go into a layer first.
        """
        # Created, never started: the command only has to exist for the engine.
        container: Container = client.containers.create(
            image, entrypoint=["true"], labels={RUN_LABEL: run_id, STEP_LABEL: step.name}
        )
        created.add(container)
        container.put_archive("/", inputs_tar(step))
        committed = container.commit(
            repository=TEMP_REPOSITORY, tag=f"{run_id}-inputs", conf={"Labels": {RUN_LABEL: run_id}}
        )
        created.images.append(_image_id(committed))
        container.remove(force=True)
        created.drop(container)
        return _image_id(committed)

    def _prepared(
        self,
        client: DockerClient,
        step: ContainerStep,
        image: str,
        output: StepOutput,
        run_id: str,
        deadline: float | None,
        cancelled: threading.Event,
        created: _Created,
    ) -> str | int:
        """The image after ``step.setup``: reused if prepared before, else built and kept.

        Returns the prepared image id, or the failing setup command's exit code.
        """
        key = hashlib.sha256(
            json.dumps([image, step.setup, step.env, step.workdir]).encode()
        ).hexdigest()[:24]
        tag = f"{PREPARED_REPOSITORY}:{key}"
        with _preparing.setdefault(key, threading.Lock()):
            try:
                prepared = _image_id(client.images.get(tag))
                output.info(f"reusing prepared image {tag} (setup already done)")
                return prepared
            except docker.errors.ImageNotFound:
                pass
            output.info(f"preparing image {tag}: running {len(step.setup)} setup command(s)")
            code, container = self._chain(
                client,
                step,
                step.setup,
                {},
                image,
                output,
                run_id,
                deadline,
                cancelled,
                created,
                with_inputs=False,
            )
            if code != 0:
                return code
            repository, _, version = tag.partition(":")
            # The container's labels pass to the image; blank the run label, or this
            # step's clean-up would remove the image it just prepared.
            committed = container.commit(
                repository=repository,
                tag=version,
                changes=[f"LABEL {RUN_LABEL}=", f"LABEL {PREPARED_LABEL}={key}"],
            )
            container.remove(force=True)
            created.drop(container)
            return _image_id(committed)

    def _ensure_image(self, client: DockerClient, image: str, output: StepOutput) -> str:
        if self._pull != "always":
            try:
                return _image_id(client.images.get(image))
            except docker.errors.ImageNotFound:
                if self._pull == "never":
                    raise ImageUnavailable(
                        f"image {image!r} is not on the engine and pulling is off; build or "
                        "import it first (aiorch image busybox), or set AIORCH_DOCKER_PULL=missing",
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
        *,
        isolated: bool,
        after: Container | None,
    ) -> Container:
        """A container for ``command``.

        ``isolated`` applies the step's user, read-only root and network settings (setup
        commands, which prepare the image without secrets or inputs, run as the image's
        user with network). ``after`` is the container of the previous command, whose
        workdir volume a read-only step takes over.
        """
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
            # A role without network: the commands get only a loopback interface.
            network_disabled=isolated and step.role is not None and not step.role.network,
            user=step.user if isolated else None,
            detach=True,
            **(_read_only_root(step, after) if isolated and step.read_only_root else {}),
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
        with swept_temporary_directory("aiorch-export-") as staging:
            root = staging
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
                    try:
                        archive.extractall(parent, filter="data")
                    except tarfile.FilterError as error:
                        raise unsafe_output(error, step.name) from None
            return pack_outputs(root, step.outputs, step.name)

    def _remove_leftovers(self, run_id: str) -> None:
        try:
            client = self._client()
        except EngineUnavailable:
            return
        label: dict[str, str | list[str] | bool] = {"label": f"{RUN_LABEL}={run_id}"}
        with contextlib.suppress(EngineUnavailable), self._connection():
            for container in client.containers.list(all=True, filters=label):
                container.remove(force=True, v=True)
            for image in client.images.list(filters=label):
                client.images.remove(_image_id(image), force=True)


def _unix_socket(host: DockerHost) -> str | None:
    """The local engine's socket path; None for a remote (tcp, ssh) engine."""
    url = host.base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    return url.removeprefix("unix://") if url.startswith("unix://") else None


def _host_key(host: DockerHost) -> str:
    # Without a base_url the client comes from the environment, which may change.
    from_env = [os.environ.get(name) for name in DOCKER_ENVIRONMENT] if not host.base_url else []
    return repr(
        (
            host.base_url,
            host.version,
            host.timeout,
            host.max_pool_size,
            host.client_kwargs,
            from_env,
        )
    )


def _read_only_root(step: ContainerStep, after: Container | None) -> dict[str, Any]:
    """Arguments for a read-only root: the workdir on an anonymous volume, /tmp in memory.

    A commit leaves volumes out, so each command takes the previous command's volume
    over (``volumes_from``); removing the last container with its volumes removes it.
    """
    workdir: dict[str, Any] = (
        {"volumes_from": [after.id]}
        if after is not None
        else {"mounts": [Mount(target=step.workdir, source=None, type="volume")]}
    )
    # /tmp here is the container's, a fresh in-memory mount, not the host's shared one.
    tmpfs = {"/tmp": "rw,nosuid,nodev,mode=1777"}  # nosec B108
    return {"read_only": True, "tmpfs": tmpfs, **workdir}


def _remove_created(client: DockerClient, created: _Created) -> None:
    """Remove the run's containers, then its intermediate images, by id."""
    try:
        for container in created.containers:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True, v=True)
        for image in reversed(created.images):
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.remove(image, force=True)
    except (docker.errors.APIError, requests.exceptions.ConnectionError):
        return  # the label sweep after the run tries again
    created.removed = True


def _kill(container: Container, timed_out: threading.Event) -> None:
    timed_out.set()
    # It may have exited on its own just as the deadline passed.
    with contextlib.suppress(docker.errors.APIError):
        container.kill()


def _image_id(image: Image) -> str:
    if image.id is None:
        raise StepError(f"the engine returned image {image!r} without an id")
    return image.id
