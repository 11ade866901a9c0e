"""Every deliberate error aiorch raises at run time is a typed error of its taxonomy.

An untyped error counts as retryable and is reported as ``unexpected-error`` (status
500), so a missing API key would be retried. Pydantic validators are the exception:
pydantic turns their ``ValueError`` into a ``ValidationError`` naming the field.
"""

from __future__ import annotations

import ast
import enum
import importlib
import inspect
import pickle
import typing
from collections.abc import Iterator
from typing import Any

import pytest

from aiorch.core.errors import AiorchError, ConfigurationError
from aiorch.core.redaction import register_secret
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


def _every_error_class() -> list[type[AiorchError]]:
    for module in package_modules():
        importlib.import_module(module)
    found: list[type[AiorchError]] = []
    pending = [AiorchError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return sorted({cls for cls in found if cls.__module__.startswith("aiorch.")}, key=repr)


_SAMPLES: dict[Any, Any] = {str: "sample text", int: 3, float: 1.5, bool: True}


def _sample(annotation: Any) -> Any:
    """A value of ``annotation`` (``str | None`` -> a str, an enum -> its first member)."""
    if typing.get_origin(annotation) in (dict, list):
        return typing.get_origin(annotation)()
    for option in typing.get_args(annotation) or (annotation,):
        if isinstance(option, type) and issubclass(option, enum.Enum):
            return next(iter(option))
        if option in _SAMPLES:
            return _SAMPLES[option]
    return None


@pytest.mark.parametrize("cls", _every_error_class(), ids=lambda cls: cls.__name__)
def test_every_error_survives_a_pickle_round_trip(cls: type[AiorchError]) -> None:
    # Prefect persists a failed task's exception; process pools pickle it across.
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    hints = typing.get_type_hints(cls.__init__)
    positional = [
        _sample(hints.get(parameter.name))
        for parameter in parameters
        if parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    ]
    keywords = {
        parameter.name: _sample(hints.get(parameter.name))
        for parameter in parameters
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is parameter.empty
    }
    if any(parameter.kind is inspect.Parameter.VAR_POSITIONAL for parameter in parameters):
        positional = ["sample text"]
    error = cls(*positional, **keywords)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert str(copy) == str(error)
    assert copy.__dict__ == error.__dict__
    assert (copy.retryable, copy.kind) == (error.retryable, error.kind)


def test_error_messages_are_masked_as_they_are_made() -> None:
    register_secret("sk-made-canary-5d1e")
    error = ConfigurationError("provider said: bad key sk-made-canary-5d1e")
    assert "sk-made-canary" not in str(error)
    assert "sk-made-canary" not in repr(pickle.loads(pickle.dumps(error)))
