"""Packaging and deployment metadata agree with the code."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tempfile
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from prefect import Flow

ROOT = Path(__file__).resolve().parents[1]


def test_distribution_and_packages() -> None:
    assert metadata.version("aiorch")
    for folder in ("flows", "tasks", "agent_blocks"):
        module = importlib.import_module(f"aiorch.{folder}")
        # The design card's folder, at the root, linked under aiorch/.
        assert Path(module.__file__ or "").resolve().parent == ROOT / folder


def test_requires_a_python_fast_agent_supports() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requires = SpecifierSet(pyproject["project"]["requires-python"])
    assert "3.11.9" not in requires
    assert "3.12.0" in requires
    assert "3.13.0" in requires


def test_locked_versions_satisfy_the_declared_bounds() -> None:
    pinned = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pinned[name.lower().replace("_", "-")] = version
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for line in pyproject["project"]["dependencies"]:
        requirement = Requirement(line)
        assert requirement.specifier, f"{requirement.name} has no version bounds"
        version = pinned[requirement.name.lower()]
        assert version in requirement.specifier, f"{requirement.name}=={version} is outside {line}"


def test_prefect_yaml_entrypoints_are_flows() -> None:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert config["deployments"]
    for deployment in config["deployments"]:
        path, _, name = deployment["entrypoint"].rpartition(".")
        assert path.startswith("aiorch.flows."), deployment["entrypoint"]
        flow = getattr(importlib.import_module(path), name)
        assert isinstance(flow, Flow)
        parameters = deployment.get("parameters", {})
        assert set(parameters) <= set(flow.parameters.properties), deployment["name"]
        missing = set(flow.parameters.required or []) - set(parameters)
        if missing:
            # Runs must name them (compare-runs: two flow run ids); say so to the user.
            assert all(name in deployment["description"] for name in missing), missing
        else:
            flow.validate_parameters(parameters)


@pytest.mark.parametrize("package", ["aiorch", "aiorch.tasks.container"])
def test_lazy_exports_list_and_resolve_every_name(package: str) -> None:
    module = importlib.import_module(package)
    assert set(module.__all__) == set(module._EXPORTS)
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    assert set(module.__all__) <= set(dir(module))
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        module.nothing_here  # noqa: B018


def test_the_collections_entry_point_loads_no_task_machinery() -> None:
    # Prefect imports aiorch.blocks at every server start: only the blocks (and the
    # envelope the routes block checks addresses with), not the tasks.
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, aiorch.blocks; "
            "print(sorted(m for m in sys.modules if m.startswith('aiorch.tasks.')))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),
    )
    assert (
        loaded.stdout.strip()
        == "['aiorch.tasks.container', 'aiorch.tasks.container.dagger_engine', "
        "'aiorch.tasks.messaging', 'aiorch.tasks.messaging.envelope', "
        "'aiorch.tasks.messaging.routes']"
    )
