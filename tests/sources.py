"""The installed package's source files, by module name, read from the checkout.

The design card's folders (flows/, tasks/, agent_blocks/) sit at the repository root and
are linked under aiorch/; each file is listed once, under its ``aiorch.*`` name.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINKED = ("flows", "tasks", "agent_blocks")


def _module(package: str, relative: Path) -> str:
    parts = [package, *relative.with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    """Every module of the ``aiorch`` package and its file."""
    found: dict[str, Path] = {}
    for path in sorted((ROOT / "aiorch").rglob("*.py")):
        relative = path.relative_to(ROOT / "aiorch")
        if relative.parts[0] not in LINKED:
            found[_module("aiorch", relative)] = path
    for folder in LINKED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            found[_module(f"aiorch.{folder}", path.relative_to(ROOT / folder))] = path
    return found
