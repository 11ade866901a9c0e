"""The wheel, installed into a fresh virtual environment beside a user's own project.

Nearly every Prefect project has its own ``flows/`` (and often ``tasks/``) package; aiorch
installs as one ``aiorch`` package, so both import and nothing shadows the other. The
fresh environment holds only the wheel; the dependencies come from the project's
environment as a plain path entry (installing them again would cost a minute of
downloads, and the flow image test installs the wheel with its dependencies for real).
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
import venv
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.sources import ROOT

USER_FLOW = """
import json
import sys

import aiorch
from aiorch import Agent, ContainerStep, run_agent, run_step
from prefect import flow

from tasks.text import shout


@flow(name="user-project-flow")
def user_flow() -> dict[str, str]:
    step = ContainerStep(name="greet", image="busybox", commands=[["echo", "hi from a step"]])
    said = run_step(step, runner="local").stdout_tail
    agent = Agent(instruction="Repeat the user.", model="passthrough", fallback_models=[])
    return {"step": said, "agent": run_agent(agent, shout(said)).text}


if __name__ == "__main__":
    import flows
    import tasks

    result = user_flow()
    print(json.dumps({
        **result,
        "aiorch": aiorch.__file__,
        "flows": flows.__file__,
        "tasks": tasks.__file__,
    }))
"""


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A new virtual environment with only the freshly built aiorch wheel installed."""
    root = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(root), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = root.glob("aiorch-*.whl")
    env = root / "venv"
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The project's site-packages as a path entry, not a site directory: its .pth files
    # (the editable install's import hook among them) are not run.
    (Path(purelib) / "zz-aiorch-test-dependencies.pth").write_text(site.getsitepackages()[0])
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--quiet",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    try:
        yield python
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run(python: Path, code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": "", **env},
    )


def test_the_wheel_holds_one_package(wheel_env: Path, tmp_path: Path) -> None:
    listing = _run(
        wheel_env,
        "import importlib.metadata as m; "
        "print(sorted({f.parts[0] for f in m.files('aiorch') if f.suffix == '.py'}))",
        tmp_path,
    )
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.strip() == "['aiorch']"
    for name in ("tasks", "flows", "agent_blocks"):
        missing = _run(wheel_env, f"import {name}", tmp_path)
        assert missing.returncode != 0
        assert f"No module named '{name}'" in missing.stderr


def test_a_user_project_with_its_own_flows_and_tasks_runs_aiorch(
    wheel_env: Path, tmp_path: Path, prefect_api: str
) -> None:
    project = tmp_path / "project"
    (project / "flows").mkdir(parents=True)
    (project / "tasks").mkdir()
    (project / "flows" / "__init__.py").write_text("")
    (project / "flows" / "user_flow.py").write_text(USER_FLOW)
    (project / "tasks" / "__init__.py").write_text("")
    (project / "tasks" / "text.py").write_text(
        textwrap.dedent(
            """
            from prefect import task

            @task
            def shout(text: str) -> str:
                return text.upper()
            """
        )
    )
    ran = subprocess.run(
        [str(wheel_env), "-m", "flows.user_flow"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": "", "PREFECT_API_URL": prefect_api},
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    result = json.loads(ran.stdout.strip().splitlines()[-1])
    assert result["step"] == "hi from a step"
    assert result["agent"] == "HI FROM A STEP"
    assert Path(result["flows"]).parent == project / "flows"
    assert Path(result["tasks"]).parent == project / "tasks"
    assert str(wheel_env.parents[1]) in result["aiorch"], "aiorch came from the checkout"


def test_the_blocks_module_registers_every_block_with_a_server(
    wheel_env: Path, tmp_path: Path, prefect_api: str
) -> None:
    registered = subprocess.run(
        [str(wheel_env), "-m", "prefect", "block", "register", "-m", "aiorch.blocks"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": "", "PREFECT_API_URL": prefect_api},
    )
    assert registered.returncode == 0, registered.stdout + registered.stderr
    for slug in ("aiorch-agent", "aiorch-model-provider", "aiorch-dagger-engine"):
        response = httpx.get(f"{prefect_api}/block_types/slug/{slug}", timeout=10)
        assert response.status_code == 200, slug
