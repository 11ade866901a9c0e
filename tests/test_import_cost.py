"""What importing aiorch loads: nothing heavy until it is used.

Defining a flow needs the public API; the Docker and Dagger SDKs, FastAgent, MCP, the
model clients, matplotlib and SQLAlchemy load when a step, an agent call, a chart or a
breaker first needs them. Each import is measured in a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys

from bench.startup import AUTHORING

LOADED_AFTER = """
import json, sys
{before}
already = set(sys.modules)
{statement}
print(json.dumps(sorted(set(sys.modules) - already)))
"""


def _newly_loaded(
    statement: str, before: str = "import prefect; from prefect import flow, task"
) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", LOADED_AFTER.format(before=before, statement=statement)],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded: list[str] = json.loads(done.stdout)
    return loaded


def _third_party_packages(modules: list[str]) -> set[str]:
    tops = {module.split(".")[0] for module in modules}
    return {top for top in tops if top not in sys.stdlib_module_names and not top.startswith("_")}


def test_the_authoring_api_loads_no_package_beyond_aiorch_and_prefect() -> None:
    loaded = _newly_loaded(AUTHORING)
    assert "aiorch.tasks.container.task" in loaded  # the names did load
    # Prefect's own submodules (blocks, runtime, ...) are what aiorch is built on.
    assert _third_party_packages(loaded) == {"aiorch", "prefect"}, (
        "importing aiorch's public API loaded other packages; import them where they are "
        "used (see docs/benchmarks.md, start-up)"
    )


def test_a_bare_import_loads_only_the_lazy_exports() -> None:
    ours = [module for module in _newly_loaded("import aiorch", before="") if "aiorch" in module]
    assert ours == ["aiorch", "aiorch.core", "aiorch.core.lazy"]


def test_the_heavy_packages_load_when_they_are_used() -> None:
    used = (
        "from aiorch import Agent; Agent(instruction='x', model='passthrough');"
        "from aiorch.core.settings import load_settings;"
        "from aiorch.tasks.container.select import make_runner;"
        "from aiorch.tasks.container.spec import RunnerKind;"
        "make_runner(RunnerKind.DOCKER, load_settings())"
    )
    assert {"fast_agent", "docker", "prefect_docker"} <= _third_party_packages(_newly_loaded(used))
