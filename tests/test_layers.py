"""The imports of the package follow the layers drawn in docs/architecture.md.

The diagram under "## Layers" is the rule: an arrow ``A --> B`` lets A import B, and
whatever B may import; modules of one part may import each other. Reading the arrows from
the document keeps the picture and the code from drifting apart.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from tests.sources import ROOT, package_modules

ARCHITECTURE = ROOT / "docs" / "architecture.md"
NODE = re.compile(r'^\s*(\w+)\["[^"]*?(aiorch(?:\.\w+)*)', re.M)
EDGE = re.compile(r"^\s*(\w+)\s*-->\s*(\w+)\s*$", re.M)
OLD_ROOTS = {"flows", "tasks", "agent_blocks", "tests", "bench", "deployments"}


def _layers_diagram() -> str:
    text = ARCHITECTURE.read_text()
    section = text.split("\n## Layers\n", 1)[1]
    return section.split("```mermaid\n", 1)[1].split("```", 1)[0]


def _parts_and_rules() -> tuple[dict[str, str], dict[str, set[str]]]:
    """Part (node id) by module prefix, and the parts each part may import."""
    diagram = _layers_diagram()
    parts = {prefix: node for node, prefix in NODE.findall(diagram)}
    edges: dict[str, set[str]] = {node: set() for node in parts.values()}
    for source, target in EDGE.findall(diagram):
        edges[source].add(target)
    allowed: dict[str, set[str]] = {}
    for node in edges:
        reach, todo = set(), [node]
        while todo:
            for target in edges[todo.pop()]:
                if target not in reach:
                    reach.add(target)
                    todo.append(target)
        allowed[node] = reach | {node}
    return parts, allowed


def _part_of(module: str, parts: dict[str, str]) -> str:
    matches = [
        prefix
        for prefix in parts
        if module == prefix or (prefix != "aiorch" and module.startswith(prefix + "."))
    ]
    assert matches, f"{module} belongs to no part of the layers diagram; add it there"
    return parts[max(matches, key=len)]


def _imports(path: Path, module: str) -> Iterator[tuple[int, str]]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                yield node.lineno, f"{base}.{node.module}" if node.module else base
            elif node.module:
                yield node.lineno, node.module


def test_every_import_follows_the_layers() -> None:
    parts, allowed = _parts_and_rules()
    modules = package_modules()
    wrong = []
    for module, path in modules.items():
        importer = _part_of(module, parts)
        for line, target in _imports(path, module):
            root = target.split(".")[0]
            where = f"{path.relative_to(ROOT)}:{line}"
            if root in OLD_ROOTS:
                wrong.append(f"{where} imports {target}: use the aiorch.* name")
            elif root == "aiorch" and _part_of(target, parts) not in allowed[importer]:
                wrong.append(f"{where} ({importer}) imports {target} ({_part_of(target, parts)})")
    assert not wrong, "imports against the layers of docs/architecture.md:\n" + "\n".join(wrong)


def test_the_diagram_forbids_upward_and_sideways_imports() -> None:
    parts, allowed = _parts_and_rules()
    resilience, agents, container = (
        parts["aiorch.tasks.resilience"],
        parts["aiorch.tasks.agents"],
        parts["aiorch.tasks.container"],
    )
    assert resilience in allowed[agents]
    assert agents not in allowed[resilience]
    assert container not in allowed[agents]
    assert parts["aiorch.flows"] not in allowed[parts["aiorch.core"]]
