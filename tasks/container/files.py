"""Files in and out of a step: selecting inputs, hashing them by content, moving archives.

Inputs are hashed by relative name, mode and content (never mtime), so a fresh checkout
of the same files hits the same cache entry. Outputs travel as one gzip'd tar archive,
which is also what the cache stores, and are restored atomically: a reader never sees a
half-written output.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pathspec

from aiorch.tasks.container.errors import MissingOutput
from aiorch.tasks.container.spec import ContainerStep, StepInput

CHUNK = 1 << 20


@dataclass(frozen=True)
class InputFile:
    """One file (or symlink) to place at ``dest``, relative to the step's workdir."""

    dest: str
    path: Path


def _spec(patterns: Iterable[str]) -> pathspec.PathSpec[Any] | None:
    patterns = list(patterns)
    return pathspec.PathSpec.from_lines("gitignore", patterns) if patterns else None


def select_files(step_input: StepInput) -> list[InputFile]:
    """The files an input contributes, in a stable order, after include/exclude."""
    source = step_input.source
    if not source.is_dir():
        return [InputFile(dest=step_input.target, path=source)]
    include, exclude = _spec(step_input.include), _spec(step_input.exclude)
    selected = []
    for directory, subdirectories, files in os.walk(source):
        subdirectories.sort()
        for name in sorted(files):
            path = Path(directory) / name
            relative = path.relative_to(source).as_posix()
            if include is not None and not include.match_file(relative):
                continue
            if exclude is not None and exclude.match_file(relative):
                continue
            dest = (PurePosixPath(step_input.target) / relative).as_posix()
            selected.append(InputFile(dest=dest, path=path))
    return selected


def input_files(step: ContainerStep) -> list[InputFile]:
    """Every input file of a step, ordered by destination."""
    files = [item for step_input in step.inputs for item in select_files(step_input)]
    return sorted(files, key=lambda item: item.dest)


def hash_inputs(step: ContainerStep) -> str:
    """A sha256 over each input's destination, type, mode and content."""
    digest = hashlib.sha256()
    for item in input_files(step):
        info = item.path.lstat()
        digest.update(
            f"{item.dest}\0{stat.S_IFMT(info.st_mode)}\0{stat.S_IMODE(info.st_mode)}\0".encode()
        )
        if item.path.is_symlink():
            digest.update(os.readlink(item.path).encode())
        else:
            with item.path.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def copy_inputs(step: ContainerStep, workdir: Path) -> None:
    """Copy a step's inputs under ``workdir`` on the host (the local runner's sandbox)."""
    for item in input_files(step):
        target = workdir / item.dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(item.path, target, follow_symlinks=False)


def inputs_tar(step: ContainerStep) -> bytes:
    """A tar of the inputs rooted at ``/`` so it unpacks into the step's workdir."""
    buffer = io.BytesIO()
    root = PurePosixPath(step.workdir.lstrip("/"))
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        directories = {PurePosixPath(step.workdir.lstrip("/"))}
        for item in input_files(step):
            destination = root / item.dest
            for parent in reversed(destination.parents):
                if parent != PurePosixPath(".") and parent not in directories:
                    archive.addfile(_directory_entry(parent.as_posix()))
                    directories.add(parent)
            archive.add(item.path, arcname=destination.as_posix(), recursive=False)
        if not step.inputs:
            archive.addfile(_directory_entry(root.as_posix()))
    return buffer.getvalue()


def _directory_entry(name: str) -> tarfile.TarInfo:
    entry = tarfile.TarInfo(name)
    entry.type = tarfile.DIRTYPE
    entry.mode = 0o755
    return entry


def pack_outputs(workdir: Path, outputs: Iterable[str], step: str) -> bytes:
    """Archive each declared output (file or directory) found under ``workdir``.

    Raises:
        MissingOutput: an output path does not exist.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for output in outputs:
            path = workdir / output
            if not path.exists() and not path.is_symlink():
                raise MissingOutput(
                    f"output {output!r} was not produced under the workdir", step=step
                )
            archive.add(path, arcname=output)
    return buffer.getvalue()


def restore_outputs(archive: bytes, outputs: Iterable[str], destination: Path) -> dict[str, Path]:
    """Unpack an outputs archive under ``destination``, replacing each output atomically."""
    destination.mkdir(parents=True, exist_ok=True)
    restored = {}
    with tempfile.TemporaryDirectory(dir=destination, prefix=".aiorch-restore-") as staging:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            tar.extractall(staging, filter="data")
        for output in outputs:
            staged, final = Path(staging) / output, destination / output
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.is_dir() and not final.is_symlink():
                retired = Path(tempfile.mkdtemp(dir=final.parent, prefix=".aiorch-old-"))
                final.rename(retired / "old")
                staged.rename(final)
                shutil.rmtree(retired)
            else:
                staged.replace(final)
            restored[output] = final
    return restored
