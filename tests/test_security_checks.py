"""Security properties checked on the code and on real runs (docs/security.md's findings).

- No subprocess is built through a shell: commands are argv lists, so text from a model,
  a dataset or a message can never become shell syntax.
- A local step's command starts with a minimal environment, not the process's own, so
  the parent's credentials (provider keys, Prefect's auth string) never reach it.
"""

from __future__ import annotations

import ast
import os

import pytest
from prefect import flow

from aiorch.tasks.container import ContainerStep, StepResult, run_step
from tests.sources import ROOT, package_modules

SHELL_CALLS = {"system", "popen", "create_subprocess_shell", "getoutput", "getstatusoutput"}


def _shell_uses(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = (
            node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        )
        if name in SHELL_CALLS:
            found.append((node.lineno, f"{name}(...)"))
        for keyword in node.keywords:
            if keyword.arg == "shell" and not (
                isinstance(keyword.value, ast.Constant) and keyword.value.value is False
            ):
                found.append((node.lineno, "shell=..."))
    return found


def test_no_subprocess_is_started_through_a_shell() -> None:
    modules = package_modules()
    assert len(modules) > 50
    found = [
        f"{path.relative_to(ROOT)}:{line} {what}"
        for path in modules.values()
        for line, what in _shell_uses(ast.parse(path.read_text(), str(path)))
    ]
    assert found == [], "start commands from argv lists, never through a shell"


def test_the_scan_finds_a_shell_call_when_there_is_one() -> None:
    planted = "import subprocess, os\nsubprocess.run('ls', shell=True)\nos.system('ls')\n"
    assert [what for _, what in _shell_uses(ast.parse(planted))] == ["shell=...", "system(...)"]


def test_a_local_step_does_not_inherit_the_parent_environment(
    prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = "parent-env-canary-7e1d"
    monkeypatch.setenv("AIORCH_TEST_PARENT_SECRET", canary)
    monkeypatch.setenv("OPENAI_API_KEY", canary)
    step = ContainerStep(
        name="environment",
        image="busybox",
        commands=[["sh", "-c", "env"]],
        env={"CHOSEN": "by-the-step"},
    )

    @flow(name="security-local-env")
    def one_step() -> StepResult:
        result: StepResult = run_step(step, "local", cache=False)
        return result

    result = one_step()
    names = {line.split("=", 1)[0] for line in result.stdout_tail.splitlines() if "=" in line}
    assert "CHOSEN" in names
    assert canary not in result.stdout_tail
    assert names <= {
        "CHOSEN",
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "TZ",
        "TMPDIR",
        "PWD",
        "SHLVL",
        "_",
    }
    assert os.environ["AIORCH_TEST_PARENT_SECRET"] == canary
