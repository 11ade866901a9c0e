"""The documentation stays true to the code and the scripts."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aiorch.core.settings import ENV_PREFIX, AiorchSettings

ROOT = Path(__file__).resolve().parents[1]


def _table_rows(markdown: str) -> dict[str, str]:
    rows = {}
    for line in markdown.splitlines():
        match = re.match(r"\|\s*`([A-Z0-9_]+)`\s*\|(.*)", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def test_every_setting_is_documented_with_its_default() -> None:
    rows = _table_rows((ROOT / "docs" / "configuration.md").read_text())
    for name, info in AiorchSettings.model_fields.items():
        variable = f"{ENV_PREFIX}{name.upper()}"
        assert variable in rows, f"{variable} is missing from docs/configuration.md"
        default_cell = rows[variable].split("|")[0]
        expected = "(empty)" if info.default is None else f"`{info.default}`"
        assert expected in default_cell, f"{variable}: default not documented"


def test_documented_settings_exist() -> None:
    rows = _table_rows((ROOT / "docs" / "configuration.md").read_text())
    script_variables = {"AIORCH_PYTHON", "AIORCH_VENV", "AIORCH_TEST_EXTRAS"}
    settings = {f"{ENV_PREFIX}{name.upper()}" for name in AiorchSettings.model_fields}
    documented = {name for name in rows if name.startswith(ENV_PREFIX)}
    assert documented - script_variables == settings


def test_readme_gives_exactly_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", quickstart, flags=re.S)
    commands = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    commands = [command for command in commands if command]
    assert commands == ["scripts/demo", "scripts/test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^(exec )?\./scripts/test\s*$", ci, flags=re.M)


def test_docs_link_to_files_that_exist() -> None:
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_docs_site_builds_strictly(scratch_dir: Path) -> None:
    mkdocs = Path(sys.executable).with_name("mkdocs")
    if not mkdocs.exists() and shutil.which("mkdocs") is None:
        pytest.fail("mkdocs is missing: install the docs extra (scripts/test does)")
    result = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(scratch_dir / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (scratch_dir / "site" / "architecture" / "index.html").exists()


def test_readme_tour_runs_and_prints_what_it_says(
    prefect_api: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tour = (ROOT / "README.md").read_text().split("## A short tour", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", tour, flags=re.S).group(1)  # type: ignore[union-attr]
    promised = re.search(r"print\(result\.stats\.top\)\s+# (.*)", snippet).group(1)  # type: ignore[union-attr]
    exec(compile(snippet, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == promised


@pytest.mark.parametrize(
    "page", ["agents.md", "resilience.md", "monitoring.md", "messaging.md", "evaluation.md"]
)
def test_guide_examples_run_and_print_what_they_say(
    prefect_api: str, capsys: pytest.CaptureFixture[str], page: str
) -> None:
    guide = (ROOT / "docs" / page).read_text()
    snippets = re.findall(r"```python\n(.*?)```", guide, flags=re.S)
    assert snippets
    for index, snippet in enumerate(snippets):
        promised = re.findall(r"^\s*print\(.*\)\s+# (.*)$", snippet, flags=re.M)
        exec(compile(snippet, f"docs/{page} example {index + 1}", "exec"), {})
        printed = capsys.readouterr().out.splitlines()
        assert printed[-len(promised) :] == promised, f"example {index + 1}"


def _examples() -> list[tuple[str, str]]:
    """Every python code block of the README, the docs and the package's docstrings."""
    from tests.sources import package_modules

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found = [
        (f"{page.relative_to(ROOT)} example {index + 1}", snippet)
        for page in pages
        for index, snippet in enumerate(
            re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
        )
    ]
    for module, path in package_modules().items():
        for index, snippet in enumerate(
            re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)
        ):
            found.append((f"{module} docstring example {index + 1}", textwrap.dedent(snippet)))
    return found


def test_every_example_parses_and_imports_names_that_exist() -> None:
    examples = _examples()
    assert len(examples) > 30
    broken = []
    for where, snippet in examples:
        try:
            tree = ast.parse(snippet, where)
        except SyntaxError as error:
            broken.append(f"{where}: {error}")
            continue
        imports: list[ast.stmt] = [
            node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)
        ]
        try:
            exec(compile(ast.Module(body=imports, type_ignores=[]), where, "exec"), {})
        except ImportError as error:
            broken.append(f"{where}: {error}")
    assert not broken, "\n".join(broken)
