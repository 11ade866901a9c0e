"""Process trees read from /proc: what a test started, and whether any of it is left."""

from __future__ import annotations

import time
from pathlib import Path

POLL_SECONDS = 0.05


def _stat(pid: int) -> tuple[str, int] | None:
    """A process's state letter and parent pid; None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()
    return fields[0], int(fields[1])


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` in the process tree (children, theirs, ...)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[1], []).append(int(entry.name))
    found: set[int] = set()
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def running(pids: set[int]) -> set[int]:
    """The processes of ``pids`` still running (an unreaped zombie has ended)."""
    return {pid for pid in pids if (stat := _stat(pid)) is not None and stat[0] != "Z"}


def wait_until_gone(pids: set[int], deadline_seconds: float) -> float:
    """Seconds until none of ``pids`` runs; fails with the survivors after the deadline."""
    started = time.monotonic()
    while left := running(pids):
        elapsed = time.monotonic() - started
        assert elapsed < deadline_seconds, f"still running after {elapsed:.1f} s: {left}"
        time.sleep(POLL_SECONDS)
    return time.monotonic() - started
