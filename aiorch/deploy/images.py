"""Images built locally, for machines that reach no registry (offline CI, air gaps).

``build_busybox_image`` imports a busybox root file system made from a static busybox
binary (Debian's ``busybox-static``) plus a symlink per applet: a few MB, built in
about a second, enough for shell-and-awk steps such as the data pipeline's.

``build_python_base_image`` imports a minimal Debian made by ``debootstrap`` with Python,
venv, tzdata and CA certificates (about 30-60 s): a stand-in for the official Python
image. ``build_flow_image`` builds the repository's ``Dockerfile`` (the Docker work
pool's image) on any base, from wheels built on the host, so nothing is downloaded
inside the build. ``build_postgres_image`` and ``build_rabbitmq_image`` import Debian's
PostgreSQL and RabbitMQ with the official images' environment contracts, for the compose
stack.

Example:
    ```python
    import docker

    from aiorch.deploy.images import build_busybox_image, busybox_binary

    build_busybox_image(docker.from_env(), busybox_binary() or "/bin/busybox")
    ```
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import docker

from aiorch.core.errors import ConfigurationError, ImageBuildError

BUSYBOX_IMAGE = "aiorch/busybox:local"
PYTHON_BASE_IMAGE = "aiorch/python-base:trixie"
FLOW_IMAGE = "aiorch/flows:local"
POSTGRES_IMAGE = "aiorch/postgres:local"
POSTGRES_ENTRYPOINT = "/usr/local/bin/aiorch-postgres-entrypoint"
RABBITMQ_IMAGE = "aiorch/rabbitmq:local"
RABBITMQ_ENTRYPOINT = "/usr/local/bin/aiorch-rabbitmq-entrypoint"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# libgomp1: llama.cpp (the model extra) is built with OpenMP.
BASE_PACKAGES = ("python3", "python3-venv", "tzdata", "ca-certificates", "libgomp1")
# Wheels are built on the host for the image: the project's environment must reach
# Python >= 3.12 on both sides, and compiled wheels only fit the same minor version.
_VERSION_PROBE = "import sys; print('%d.%d' % sys.version_info[:2])"


def busybox_binary() -> str | None:
    """Path of a statically linked busybox (Debian's busybox-static), if installed."""
    return shutil.which("busybox") or None


def _add(archive: tarfile.TarFile, name: str, kind: bytes, mode: int, **extra: str) -> None:
    entry = tarfile.TarInfo(name)
    entry.type = kind
    entry.mode = mode
    for key, value in extra.items():
        setattr(entry, key, value)
    archive.addfile(entry)


def build_busybox_image(
    client: docker.DockerClient, busybox: str, image: str = BUSYBOX_IMAGE
) -> str:
    """Import a busybox root file system as ``image``; return the image id."""
    applets = subprocess.run(
        [busybox, "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for directory in ("bin", "etc", "root", "work"):
            _add(archive, directory, tarfile.DIRTYPE, 0o755)
        _add(archive, "tmp", tarfile.DIRTYPE, 0o1777)
        archive.add(busybox, arcname="bin/busybox")
        for applet in applets:
            if applet != "busybox":
                _add(archive, f"bin/{applet}", tarfile.SYMTYPE, 0o777, linkname="busybox")
        passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
        entry = tarfile.TarInfo("etc/passwd")
        entry.size = len(passwd)
        entry.mode = 0o644
        archive.addfile(entry, io.BytesIO(passwd))
    repository, tag = image.rsplit(":", 1)
    client.api.import_image_from_data(
        buffer.getvalue(), repository=repository, tag=tag, changes=["ENV PATH=/bin"]
    )
    image_id: str | None = client.images.get(image).id
    if image_id is None:
        raise ImageBuildError(f"docker import of {image} returned no image id")
    return image_id


def debian_mirror(sources: Path = Path("/etc/apt/sources.list.d")) -> str:
    """The Debian mirror this machine's apt uses (the public one when none is found)."""
    candidates = sorted(sources.glob("*.sources")) + sorted(sources.glob("*.list"))
    for path in [*candidates, sources.parent / "sources.list"]:
        if not path.is_file():
            continue
        for match in re.finditer(r"(?:URIs:|^deb)\s+(\S+)", path.read_text(), re.MULTILINE):
            uri = match.group(1)
            if uri.rstrip("/").endswith("/debian"):
                return uri
    return DEBIAN_MIRROR


def build_python_base_image(
    client: docker.DockerClient,
    image: str = PYTHON_BASE_IMAGE,
    suite: str = "trixie",
    mirror: str | None = None,
) -> str:
    """Import a minimal Debian ``suite`` with Python as ``image``; return the image id.

    Needs root and ``debootstrap`` (``apt-get install debootstrap``). trixie ships
    Python 3.13, which aiorch's dependencies need (>= 3.12).
    """
    return _debootstrap_image(
        client, image, suite, BASE_PACKAGES, mirror, changes=['CMD ["python3"]']
    )


def build_postgres_image(
    client: docker.DockerClient,
    image: str = POSTGRES_IMAGE,
    suite: str = "bookworm",
    mirror: str | None = None,
) -> str:
    """Import Debian's PostgreSQL as ``image``, with the official image's contract.

    For machines without a registry: ``POSTGRES_USER``, ``POSTGRES_PASSWORD`` and
    ``POSTGRES_DB`` create the cluster on first start, data lives in ``PGDATA``
    (``/var/lib/postgresql/data``), the server runs as ``postgres`` and ``pg_isready``
    is on the path, so the compose stack takes it in place of ``postgres:16``.
    """
    entrypoint = (Path(__file__).parent / "postgres_entrypoint.sh").read_text()
    return _debootstrap_image(
        client,
        image,
        suite,
        ("postgresql",),
        mirror,
        changes=[
            f'ENTRYPOINT ["{POSTGRES_ENTRYPOINT}"]',
            "ENV PGDATA=/var/lib/postgresql/data",
            "EXPOSE 5432",
        ],
        files={POSTGRES_ENTRYPOINT: entrypoint},
    )


def build_rabbitmq_image(
    client: docker.DockerClient,
    image: str = RABBITMQ_IMAGE,
    suite: str = "bookworm",
    mirror: str | None = None,
) -> str:
    """Import Debian's RabbitMQ as ``image``, with the official image's contract.

    For machines without a registry: ``RABBITMQ_DEFAULT_USER`` and
    ``RABBITMQ_DEFAULT_PASS`` create the first user, data lives in ``/var/lib/rabbitmq``
    (named ``rabbit@HOSTNAME``: give the container a fixed hostname), AMQP listens on
    5672, the Prometheus plugin on 15692, and ``rabbitmq-diagnostics`` is on the path,
    so the compose stack takes it in place of ``rabbitmq:3``.
    """
    entrypoint = (Path(__file__).parent / "rabbitmq_entrypoint.sh").read_text()
    return _debootstrap_image(
        client,
        image,
        suite,
        ("rabbitmq-server",),
        mirror,
        changes=[
            f'ENTRYPOINT ["{RABBITMQ_ENTRYPOINT}"]',
            # The node and its command-line tools (health checks run as the image's
            # user) share the Erlang cookie in this home.
            "USER rabbitmq",
            "ENV HOME=/var/lib/rabbitmq LANG=C.UTF-8",
            "WORKDIR /var/lib/rabbitmq",
            "EXPOSE 5672 15692",
        ],
        files={RABBITMQ_ENTRYPOINT: entrypoint},
        # The package's install made an Erlang cookie; one baked into the image would be
        # every node's, so each node makes its own on first start.
        remove=("var/lib/rabbitmq/.erlang.cookie",),
    )


def _debootstrap_image(
    client: docker.DockerClient,
    image: str,
    suite: str,
    packages: tuple[str, ...],
    mirror: str | None,
    *,
    changes: list[str],
    files: dict[str, str] | None = None,
    remove: tuple[str, ...] = (),
) -> str:
    """A minimal Debian ``suite`` with ``packages`` (and executable ``files``) as ``image``.

    ``remove`` names paths (relative to the root) the packages' installation left that
    must not ship.
    """
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise ConfigurationError(
            "debootstrap is not installed: `apt-get install debootstrap` (as root), or "
            "pull the official image where a registry is reachable"
        )
    with tempfile.TemporaryDirectory(prefix="aiorch-rootfs-") as scratch:
        root = Path(scratch) / "rootfs"
        subprocess.run(
            [
                debootstrap,
                "--variant=minbase",
                f"--include={','.join(packages)}",
                suite,
                str(root),
                mirror or debian_mirror(),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        for name in remove:
            (root / name).unlink(missing_ok=True)
        for name, content in (files or {}).items():
            path = root / name.lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            path.chmod(0o755)
        archive = Path(scratch) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(archive), "."], check=True)
        repository, tag = image.rsplit(":", 1)
        client.api.import_image_from_file(
            str(archive), repository=repository, tag=tag, changes=changes
        )
    image_id: str | None = client.images.get(image).id
    if image_id is None:
        raise ImageBuildError(f"docker import of {image} returned no image id")
    return image_id


def image_python_version(client: docker.DockerClient, image: str, python: str = "python3") -> str:
    """The ``major.minor`` version of ``python`` inside ``image``."""
    try:
        output = client.containers.run(image, [python, "-c", _VERSION_PROBE], remove=True)
    except docker.errors.ImageNotFound as error:
        raise ConfigurationError(
            f"base image {image!r} is not on this Docker engine: pull it, or build a local "
            f"one with `aiorch image python-base` and pass --base {PYTHON_BASE_IMAGE}"
        ) from error
    return bytes(output).decode().strip()


def host_python(version: str) -> str:
    """A Python ``version`` (``major.minor``) on this machine: this one, PATH, or pyenv."""
    candidates = [sys.executable, shutil.which(f"python{version}") or ""]
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates += sorted(str(p) for p in Path(pyenv_root).glob(f"versions/{version}*/bin/python3"))
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", _VERSION_PROBE], capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    raise ConfigurationError(
        f"the image has Python {version} but this machine has no python{version} to build "
        f"wheels with: install it (pyenv install {version}), or pick a base image with the "
        "Python version of this environment"
    )


def build_wheelhouse(project: Path, python: str, extras: str = "") -> Path:
    """Build the project and its pinned dependencies as wheels in ``project/wheelhouse``."""
    wheelhouse = project / "wheelhouse"
    for stale in wheelhouse.glob("*.whl"):
        stale.unlink()
    target = f".[{extras}]" if extras else "."
    command = [python, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheelhouse)]
    built = subprocess.run(
        [*command, "--constraint", "constraints.txt", target],
        cwd=project,
        capture_output=True,
        text=True,
    )
    if built.returncode != 0:
        # pip repeats harmless warnings per package (unreachable extra indexes): keep errors.
        errors = [line for line in built.stderr.splitlines() if not line.startswith("WARNING")]
        raise ImageBuildError(f"pip wheel failed ({built.returncode}):\n" + "\n".join(errors[-40:]))
    return wheelhouse


def build_flow_image(
    client: docker.DockerClient,
    project: Path,
    base_image: str,
    image: str = FLOW_IMAGE,
    extras: str = "",
    log: Callable[[str], None] = print,
) -> str:
    """Build ``project``'s Dockerfile on ``base_image`` from host-built wheels; return its id.

    Example:
        ```python
        from pathlib import Path

        import docker

        from aiorch.deploy.images import build_flow_image

        build_flow_image(docker.from_env(), Path("."), "aiorch/python-base:trixie")
        ```
    """
    version = image_python_version(client, base_image)
    log(f"base image {base_image} has Python {version}; building wheels on the host")
    build_wheelhouse(project, host_python(version), extras)
    image_id: str | None = None
    stream = client.api.build(
        path=str(project),
        tag=image,
        buildargs={"BASE_IMAGE": base_image, "EXTRAS": extras},
        rm=True,
        forcerm=True,
        pull=False,
        decode=True,
    )
    for chunk in stream:
        if "error" in chunk:
            raise ImageBuildError(f"docker build of {image} failed: {chunk['error'].strip()}")
        line = str(chunk.get("stream", "")).rstrip()
        if line:
            log(line)
        image_id = chunk.get("aux", {}).get("ID", image_id)
    if image_id is None:
        raise ImageBuildError(f"docker build of {image} reported no image id")
    return image_id
