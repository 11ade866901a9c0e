"""Every command-line error is a line or two naming what was wrong and the fix.

A non-zero exit code and no traceback, unless ``--debug`` asks for one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from uuid import uuid4

import pytest

from aiorch.cli import main
from aiorch.tasks.resilience.breaker import CircuitBreaker
from aiorch.tasks.resilience.breaker_store import BreakerStore

ROOT = Path(__file__).resolve().parents[1]


def _fails(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert code != 0, captured.out
    assert "Traceback" not in captured.err + captured.out
    lines = captured.err.strip().splitlines()
    assert 1 <= len(lines) <= 2, captured.err
    return captured.err


def test_comparing_runs_that_do_not_exist_names_them(
    prefect_api: str, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = uuid4()
    error = _fails(capsys, "compare", str(missing), str(uuid4()))
    assert f"aiorch compare: flow run {missing} does not exist on {prefect_api}" in error
    assert "`prefect flow-run ls` lists the runs there" in error


def test_a_bad_block_name_says_what_a_name_may_hold(
    prefect_api: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLI_TEST_SECRET", "sk-cli-canary-77e1")
    error = _fails(
        capsys, "block", "create", "secret", "Bad Name!", "--from-env", "CLI_TEST_SECRET"
    )
    assert error.startswith("aiorch block: ")
    assert "name" in error
    assert "sk-cli-canary" not in error


def test_forcing_an_unknown_breaker_is_refused_with_a_suggestion(
    prefect_api: str, capsys: pytest.CaptureFixture[str]
) -> None:
    CircuitBreaker("engine:docker:default").force("closed")
    error = _fails(capsys, "breaker", "engine:docker:defualt", "open")
    assert "no breaker named 'engine:docker:defualt' has been used here" in error
    assert "did you mean 'engine:docker:default'?" in error
    names = {str(row["name"]) for row in BreakerStore.default().states()}
    assert "engine:docker:defualt" not in names  # nothing was created
    assert main(["breaker", "brand-new", "disable", "--create"]) == 0
    assert CircuitBreaker("brand-new").state().value == "disabled"


def test_debug_shows_the_traceback(prefect_api: str) -> None:
    env = {"PREFECT_API_URL": prefect_api}
    argv = [sys.executable, "-m", "aiorch.cli", "--debug", "breaker", "nothing-like-it", "open"]
    done = subprocess.run(argv, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True)
    assert done.returncode == 1
    assert "Traceback" in done.stderr
    assert "ConfigurationError" in done.stderr
