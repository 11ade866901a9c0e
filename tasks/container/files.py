"""Files in and out of a step: selecting inputs, hashing them by content, moving archives.

Inputs are hashed by relative name, mode and content (never mtime), so a fresh checkout
of the same files hits the same cache entry. Outputs travel as one gzip'd tar archive,
which is also what the cache stores, and are restored atomically: a reader never sees a
half-written output. An export replaces only what an earlier export made (recorded in
``.aiorch-exports.json`` beside the outputs) and otherwise changes nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pathspec
from pydantic import Field

from aiorch.core.models import AiorchModel
from aiorch.tasks.container.errors import ExportConflict, MissingOutput, UnsafeOutput
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
    """A tar of the inputs rooted at ``/`` so it unpacks into the step's workdir.

    With :attr:`ContainerStep.user` set, the workdir, everything in it and the mount
    points of the cache volumes belong to that user, so commands running as it can write
    their outputs (a new volume takes the owner of its mount point).
    """
    owner = step.owner()

    def owned(entry: tarfile.TarInfo) -> tarfile.TarInfo:
        if owner is not None:
            entry.uid, entry.gid = owner
            entry.uname = entry.gname = ""
        return entry

    buffer = io.BytesIO()
    root = PurePosixPath(step.workdir.lstrip("/"))
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        directories: set[PurePosixPath] = set()

        def directory(path: PurePosixPath) -> None:
            # Nothing above the workdir: the engine makes missing parents, and an entry
            # would change the owner and mode of an image directory such as /usr.
            for parent in [*reversed(path.parents), path]:
                if parent.is_relative_to(root) and parent not in directories:
                    archive.addfile(owned(_directory_entry(parent.as_posix())))
                    directories.add(parent)

        # The workdir itself always comes first: its entry sets owner and mode.
        directory(root)
        for item in input_files(step):
            destination = root / item.dest
            directory(destination.parent)
            archive.add(item.path, arcname=destination.as_posix(), recursive=False, filter=owned)
        if owner is not None:
            for volume in step.cache_volumes:
                directory(root / volume.path)
    return buffer.getvalue()


def _directory_entry(name: str) -> tarfile.TarInfo:
    entry = tarfile.TarInfo(name)
    entry.type = tarfile.DIRTYPE
    entry.mode = 0o755
    return entry


def pack_outputs(workdir: Path, outputs: Iterable[str], step: str) -> bytes:
    """Archive each declared output (file or directory) found under ``workdir``.

    The archive is checked with the filter :func:`restore_outputs` applies, so a cache
    entry that could not be restored is never made.

    Raises:
        MissingOutput: an output path does not exist.
        UnsafeOutput: an output holds what cannot be restored safely (an absolute
            symlink, a link leaving the output, a device file).
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
    _check_restorable(buffer.getvalue(), step)
    return buffer.getvalue()


def _check_restorable(archive: bytes, step: str) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="aiorch-check-") as destination,
        tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar,
    ):
        for member in tar:
            try:
                tarfile.data_filter(member, destination)
            except tarfile.FilterError as error:
                raise unsafe_output(error, step) from None


def unsafe_output(error: tarfile.FilterError, step: str) -> UnsafeOutput:
    """The step error for an output member tarfile's ``data`` filter refused."""
    return UnsafeOutput(
        f"output {error.tarinfo.name!r} cannot be restored safely ({error}); make links "
        "relative and pointing inside the output, or copy the file they point at",
        step=step,
    )


EXPORT_MANIFEST = ".aiorch-exports.json"


class _Manifest(AiorchModel):
    """What aiorch exported into a directory, so a later export may replace only that.

    Each output is recorded with the device and inode it was exported as: a path the
    user replaced since is the user's, and is left alone.
    """

    outputs: dict[str, tuple[int, int]] = Field(default_factory=dict)

    @classmethod
    def read(cls, destination: Path) -> _Manifest:
        try:
            return cls.model_validate_json((destination / EXPORT_MANIFEST).read_bytes())
        except (OSError, ValueError):
            return cls()

    def owns(self, destination: Path, output: str) -> bool:
        try:
            info = (destination / output).lstat()
        except FileNotFoundError:
            return True
        return self.outputs.get(output) == (info.st_dev, info.st_ino)

    def write(self, destination: Path) -> None:
        staged = destination / f"{EXPORT_MANIFEST}.{os.getpid()}"
        staged.write_text(self.model_dump_json())
        staged.replace(destination / EXPORT_MANIFEST)


@contextmanager
def _exporting(destination: Path) -> Iterator[None]:
    """Hold the destination's lock: two processes exporting there take turns.

    Without it, one process could see the other's output renamed in before its
    manifest records it, and take it for the user's.
    """
    if not destination.is_dir():
        yield
        return
    descriptor = os.open(destination, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def check_export_destination(destination: Path, outputs: Iterable[str], step: str) -> None:
    """Refuse, before anything runs, an export that would touch what aiorch did not make.

    Raises:
        ExportConflict: ``destination`` (or a parent of an output in it) is a file, or an
            output's path exists and was not exported there by aiorch.
    """
    with _exporting(destination):
        _check_destination(destination, list(outputs), step)


def _check_destination(destination: Path, outputs: list[str], step: str) -> None:
    for parent in (destination, *destination.parents):
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise ExportConflict(
                    f"export_to {str(destination)!r}: {str(parent)!r} is a file, not a "
                    "directory; pass a directory path for export_to",
                    step=step,
                )
            break
    manifest = _Manifest.read(destination)
    for output in outputs:
        final = destination / output
        for between in list(reversed(PurePosixPath(output).parents))[1:]:
            holder = destination / between
            if holder.is_symlink() or (holder.exists() and not holder.is_dir()):
                raise ExportConflict(
                    f"export_to {str(destination)!r}: {str(holder)!r} is in the way of output "
                    f"{output!r} and aiorch did not make it; nothing was changed. Move it, "
                    "or pass another export_to",
                    step=step,
                )
        if (final.exists() or final.is_symlink()) and not manifest.owns(destination, output):
            raise ExportConflict(
                f"export_to {str(destination)!r}: {str(final)!r} exists and aiorch did not "
                "export it there; nothing was changed. Move it, or pass an export_to "
                "directory that does not hold it",
                step=step,
            )


def restore_outputs(
    archive: bytes, outputs: Iterable[str], destination: Path, step: str | None = None
) -> dict[str, Path]:
    """Unpack an outputs archive under ``destination``: all outputs or none.

    Only paths aiorch exported there before are replaced; anything else in the way is
    an :class:`ExportConflict` and the destination is left as it was. Each output is
    swapped in by rename, so a reader never sees a half-written one, and a failure
    part-way puts back what was replaced.
    """
    outputs = list(outputs)
    check_export_destination(destination, outputs, step or "")  # before anything is made
    destination.mkdir(parents=True, exist_ok=True)
    with _exporting(destination):
        return _restore(archive, outputs, destination, step or "")


def _restore(archive: bytes, outputs: list[str], destination: Path, step: str) -> dict[str, Path]:
    _check_destination(destination, outputs, step)  # again, now that the lock is held
    manifest = _Manifest.read(destination)
    restored: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(dir=destination, prefix=".aiorch-restore-") as staging:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            tar.extractall(staging, filter="data")
        retired = Path(staging) / ".retired"
        retired.mkdir()
        done: list[tuple[Path, Path | None]] = []
        try:
            for index, output in enumerate(outputs):
                staged, final = Path(staging) / output, destination / output
                final.parent.mkdir(parents=True, exist_ok=True)
                previous = None
                if final.exists() or final.is_symlink():
                    previous = retired / str(index)
                    final.rename(previous)
                done.append((final, previous))
                staged.rename(final)
                info = final.lstat()
                manifest.outputs[output] = (info.st_dev, info.st_ino)
                restored[output] = final
            manifest.write(destination)
        except BaseException:
            for final, previous in reversed(done):
                if final.exists() or final.is_symlink():
                    if final.is_dir() and not final.is_symlink():
                        shutil.rmtree(final)
                    else:
                        final.unlink()
                if previous is not None:
                    previous.rename(final)
            raise
    return restored
