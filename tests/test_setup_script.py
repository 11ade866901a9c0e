"""scripts/lib/setup.sh: finding an interpreter and deciding when to reinstall."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETUP = ROOT / "scripts" / "lib" / "setup.sh"


def _bash(snippet: str, path: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("AIORCH_")}
    clean.pop("PYENV_VERSION", None)
    return subprocess.run(
        [shutil.which("bash") or "/bin/bash", "-c", f'source "{SETUP}"; {snippet}'],
        env={**clean, "PATH": path, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _old_python() -> str:
    for candidate in [
        "/usr/bin/python3.11",
        *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[01]*/bin/python3"))),
    ]:
        if Path(candidate).exists():
            return candidate
    pytest.skip("no Python older than 3.12 on this machine to reject")


def _path_with(scratch: Path, **links: str) -> str:
    """A PATH holding only coreutils and the given interpreter links."""
    bin_dir = scratch / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, target in links.items():
        (bin_dir / name).symlink_to(target)
    core = {Path(shutil.which(tool) or "").parent for tool in ("ls", "sort", "cat", "sha256sum")}
    return os.pathsep.join([str(bin_dir), *sorted(str(directory) for directory in core)])


def test_rejects_an_old_python_and_explains_how_to_get_one(scratch_dir: Path) -> None:
    path = _path_with(scratch_dir, python3=_old_python())
    result = _bash("aiorch_find_python", path, HOME=str(scratch_dir))
    assert result.returncode == 1
    assert result.stdout == ""
    assert "no Python >= 3.12" in result.stderr
    assert "pyenv install 3.13" in result.stderr
    assert "AIORCH_PYTHON=" in result.stderr


def test_explicit_interpreter_must_be_recent(scratch_dir: Path) -> None:
    result = _bash("aiorch_find_python", _path_with(scratch_dir), AIORCH_PYTHON=_old_python())
    assert result.returncode == 1
    assert "AIORCH_PYTHON=" in result.stderr
    assert "unset it or point it at one" in result.stderr


def test_explicit_interpreter_is_used(scratch_dir: Path) -> None:
    result = _bash("aiorch_find_python", _path_with(scratch_dir), AIORCH_PYTHON=sys.executable)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == sys.executable


def test_finds_a_recent_python_on_path(scratch_dir: Path) -> None:
    path = _path_with(scratch_dir, python3=_old_python(), **{"python3.13": sys.executable})
    result = _bash("aiorch_find_python", path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(scratch_dir / "bin" / "python3.13")


def test_finds_pyenv_versions_the_shims_hide(scratch_dir: Path) -> None:
    pyenv = shutil.which("pyenv")
    if pyenv is None:
        pytest.skip("pyenv is not installed here")
    root = subprocess.run(
        [pyenv, "root"], capture_output=True, text=True, check=True
    ).stdout.strip()
    recent = sorted(glob.glob(f"{root}/versions/3.1[2-9]*"))
    if not recent:
        pytest.skip("pyenv has no Python >= 3.12")
    path = _path_with(scratch_dir, python3=_old_python(), pyenv=pyenv)
    result = _bash("aiorch_find_python", path, PYENV_ROOT=root)
    assert result.returncode == 0, result.stderr
    found = result.stdout.strip()
    assert found.startswith(f"{root}/versions/3.1")
    assert found.endswith("/bin/python3")
    version = subprocess.run(
        [found, "-c", "import sys; print(sys.version_info[:2] >= (3, 12))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.strip() == "True"


@pytest.mark.parametrize(
    ("installed", "wanted", "covered"),
    [
        ("dev,docs", "", True),
        ("dev,docs", "dev", True),
        ("dev,docs", "dev,docs", True),
        ("", "dev", False),
        ("dev", "dev,docs", False),
        ("docs", "dev", False),
    ],
)
def test_extras_cover(scratch_dir: Path, installed: str, wanted: str, covered: bool) -> None:
    result = _bash(f'aiorch_extras_cover "{installed}" "{wanted}"', os.environ["PATH"])
    assert (result.returncode == 0) is covered


def test_fingerprint_changes_with_pyproject_or_constraints(scratch_dir: Path) -> None:
    (scratch_dir / "scripts" / "lib").mkdir(parents=True)
    shutil.copy(SETUP, scratch_dir / "scripts" / "lib" / "setup.sh")
    for name in ("pyproject.toml", "constraints.txt"):
        shutil.copy(ROOT / name, scratch_dir / name)
    copy = scratch_dir / "scripts" / "lib" / "setup.sh"

    def fingerprint() -> str:
        result = subprocess.run(
            ["bash", "-c", f'source "{copy}"; aiorch_fingerprint'],
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.strip()

    original = fingerprint()
    assert len(original) == 16
    assert fingerprint() == original
    with (scratch_dir / "constraints.txt").open("a") as constraints:
        constraints.write("six==1.16.0\n")
    after_constraints = fingerprint()
    with (scratch_dir / "pyproject.toml").open("a") as pyproject:
        pyproject.write("\n# changed\n")
    assert len({original, after_constraints, fingerprint()}) == 3
