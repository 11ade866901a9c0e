"""Lint the dev container: it cannot be built here (no registry), so check what it says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dockerfile

ROOT = Path(__file__).resolve().parents[1]
DEVCONTAINER = ROOT / ".devcontainer"


def _instructions() -> list[tuple[str, tuple[str, ...]]]:
    return [
        (command.cmd, command.value)
        for command in dockerfile.parse_file(str(DEVCONTAINER / "Dockerfile"))
    ]


def test_based_on_an_official_python_image_recent_enough() -> None:
    bases = [value[0] for cmd, value in _instructions() if cmd == "FROM"]
    assert len(bases) == 1
    match = re.fullmatch(r"python:3\.(\d+)-slim-[a-z]+", bases[0])
    assert match, f"{bases[0]} is not an official python:3.X-slim-<debian> image"
    assert int(match.group(1)) >= 12


def test_interpreter_matches_the_base_image() -> None:
    instructions = _instructions()
    base_minor = re.search(r"python:(3\.\d+)", instructions[0][1][0]).group(1)  # type: ignore[union-attr]
    env = dict(
        zip(*[iter(next(value for cmd, value in instructions if cmd == "ENV"))] * 2, strict=True)
    )
    assert env["AIORCH_PYTHON"] == f"/usr/local/bin/python{base_minor}"
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"


def test_apt_layers_are_lean() -> None:
    for cmd, value in _instructions():
        if cmd == "RUN" and "apt-get install" in value[0]:
            assert "--no-install-recommends" in value[0]
            assert "apt-get update" in value[0], "update and install belong in one layer"
            assert "rm -rf /var/lib/apt/lists/*" in value[0]


def test_runs_as_an_unprivileged_user() -> None:
    users = [value[0] for cmd, value in _instructions() if cmd == "USER"]
    assert users
    assert users[-1] not in {"root", "0"}
    config = json.loads((DEVCONTAINER / "devcontainer.json").read_text())
    assert config["remoteUser"] == users[-1]


def test_devcontainer_config_points_at_real_files() -> None:
    config = json.loads((DEVCONTAINER / "devcontainer.json").read_text())
    assert (DEVCONTAINER / config["build"]["dockerfile"]).is_file()
    assert (DEVCONTAINER / config["build"]["context"] / "pyproject.toml").is_file()
    script = config["postCreateCommand"].split()[0]
    assert (ROOT / script).is_file()
    assert 4200 in config["forwardPorts"]
