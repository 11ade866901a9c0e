"""Every deliberate error aiorch raises at run time is a typed error of its taxonomy.

An untyped error counts as retryable and is reported as ``unexpected-error`` (status
500), so a missing API key would be retried. Pydantic validators are the exception:
pydantic turns their ``ValueError`` into a ``ValidationError`` naming the field.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

import pytest

from aiorch.core.errors import AiorchError, ConfigurationError
from tests.sources import ROOT, package_modules

BARE = {"ValueError", "RuntimeError", "TypeError", "KeyError", "Exception", "AssertionError"}
VALIDATORS = {"field_validator", "model_validator", "validator", "root_validator"}


def _decorator_name(node: ast.expr) -> str:
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Attribute):
        return target.attr
    return target.id if isinstance(target, ast.Name) else ""


def _bare_raises(tree: ast.AST) -> Iterator[tuple[int, str, str]]:
    def visit(node: ast.AST, function: str, in_validator: bool) -> Iterator[tuple[int, str, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                validator = any(_decorator_name(d) in VALIDATORS for d in child.decorator_list)
                yield from visit(child, child.name, validator)
                continue
            if isinstance(child, ast.Raise) and child.exc is not None and not in_validator:
                raised = child.exc.func if isinstance(child.exc, ast.Call) else child.exc
                if isinstance(raised, ast.Name) and raised.id in BARE:
                    yield child.lineno, function, raised.id
            yield from visit(child, function, in_validator)

    yield from visit(tree, "<module>", False)


def test_no_bare_builtin_errors_outside_validators() -> None:
    found = []
    for path in package_modules().values():
        tree = ast.parse(path.read_text(), str(path))
        for line, function, name in _bare_raises(tree):
            found.append(f"{path.relative_to(ROOT)}:{line} {function}: raise {name}")
    assert not found, "raise a typed aiorch error instead:\n" + "\n".join(found)


def test_the_walk_finds_a_bare_error_and_spares_validators() -> None:
    source = (
        "from pydantic import field_validator\n"
        "def run():\n    raise ValueError('x')\n"
        "class M:\n    @field_validator('a')\n"
        "    def check(cls, v):\n        raise ValueError('y')\n"
    )
    assert [(line, name) for line, name, _ in _bare_raises(ast.parse(source))] == [(3, "run")]


@pytest.mark.parametrize("error", [ConfigurationError("runner: must be one of ...")])
def test_configuration_errors_are_not_retryable(error: AiorchError) -> None:
    assert not error.retryable
    assert error.status == 400
