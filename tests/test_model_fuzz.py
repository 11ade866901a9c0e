"""Every aiorch model and block, built from random junk: errors name a field, never a secret.

Hypothesis feeds each public pydantic model (specs, results, configs, messages) and each
block dictionaries of its own field names (and a misspelt one) holding junk, including a
secret-like canary in every shape (plain, in a list, in a dict, in a URL). Whatever the
outcome, a validation error must not quote the canary, and each of its problems must
name where it is: a field location, or a field or the model in its message.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

import aiorch
from tests.sources import package_modules

CANARY = "sk-fuzz-canary-4b7e90d2c1"


def _models() -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    for module in package_modules():
        if ".testing." in module:
            continue
        for name, value in vars(importlib.import_module(module)).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseModel)
                and value.__module__ == module
                and value.model_fields
                and not name.startswith("_")
                and not issubclass(value, aiorch.core.settings.AiorchSettings)
            ):
                found[f"{module}.{name}"] = value
    return [found[key] for key in sorted(found)]


JUNK = st.one_of(
    st.just(CANARY),
    st.just([CANARY]),
    st.just([[CANARY]]),
    st.just({"TOKEN": CANARY}),
    st.just(f"http://{CANARY}.example/v1"),
    st.just(f"/{CANARY}"),
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)


@pytest.mark.parametrize("model", _models(), ids=lambda model: model.__name__)
def test_validation_errors_name_a_field_and_never_echo_a_secret(model: type[BaseModel]) -> None:
    fields = sorted(model.model_fields)
    keys = st.sampled_from([*fields, f"{fields[0]}x"])

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.dictionaries(keys, JUNK, max_size=len(fields) + 1))
    def check(data: dict[str, Any]) -> None:
        try:
            model.model_validate(data)
        except ValidationError as error:
            text = f"{error}\n{error!r}"
            assert CANARY not in text
            for problem in error.errors(include_input=False):
                message = str(problem["msg"])
                named = bool(problem["loc"]) or model.__name__ in message
                assert named or any(field in message for field in fields), problem

    check()


def test_the_walk_finds_the_models_that_cross_boundaries() -> None:
    names = {model.__name__ for model in _models()}
    assert {"ContainerStep", "StepResult", "Agent", "ModelProvider", "ProblemDetails"} <= names
