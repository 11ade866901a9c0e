"""Images built locally, for machines that reach no registry (offline CI, air gaps).

``build_busybox_image`` imports a busybox root file system made from a static busybox
binary (Debian's ``busybox-static``) plus a symlink per applet: a few MB, built in
about a second, enough for shell-and-awk steps such as the data pipeline's.

Example:
    ```python
    import docker

    from tasks.container.images import build_busybox_image, busybox_binary

    build_busybox_image(docker.from_env(), busybox_binary() or "/bin/busybox")
    ```
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile

import docker

BUSYBOX_IMAGE = "aiorch/busybox:local"


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
        raise RuntimeError(f"docker import of {image} returned no image id")
    return image_id
