"""What machine the benchmarks ran on, as a markdown list for docs/benchmarks.md."""

from __future__ import annotations

import datetime
import os
import platform
from importlib import metadata
from pathlib import Path


def _first(path: str, prefix: str) -> str | None:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(prefix):
            return line.split(":", 1)[1].strip() if ":" in line else line.split("=", 1)[1]
    return None


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _docker() -> str:
    try:
        import docker

        client = docker.from_env(timeout=5)
        try:
            return f"Docker engine {client.version().get('Version', '?')}"
        finally:
            client.close()
    except Exception as error:  # any failure just means "no engine" here
        return f"no Docker engine ({error.__class__.__name__})"


def describe_machine() -> str:
    """CPU, memory, OS, Python and the versions that matter, one bullet each."""
    memory_kb = _first("/proc/meminfo", "MemTotal")
    memory = f"{int(memory_kb.split()[0]) / 1024 / 1024:.1f} GiB" if memory_kb else "unknown"
    os_name = (_first("/etc/os-release", "PRETTY_NAME=") or platform.platform()).strip('"')
    packages = ", ".join(
        f"{name} {_version(name)}"
        for name in ("prefect", "prefect-docker", "fast-agent-mcp", "pydantic-ai-slim")
    )
    return "\n".join(
        [
            f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
            f"- CPU: {_first('/proc/cpuinfo', 'model name') or platform.processor()}, "
            f"{os.cpu_count()} logical cores",
            f"- memory: {memory}",
            f"- OS: {os_name}, kernel {platform.release()}",
            f"- Python {platform.python_version()}; {packages}",
            f"- {_docker()}",
        ]
    )
