"""Strict fields for aiorch's blocks: a typo is an error that suggests the right name.

Prefect blocks accept unknown fields and drop them silently, so ``temprature=0.2``
would be ignored. :class:`StrictFields`, mixed in before ``Block``, rejects them with a
"did you mean" suggestion. A block document saved by an older version of the block (a
field since removed) still loads: while Prefect builds a block from a saved document,
unknown fields are dropped with a warning instead. Validation errors never quote the
input, which may hold a secret.

Example:
    ```python
    from prefect.blocks.core import Block

    from aiorch.core.blocks import StrictFields

    class Greeter(StrictFields, Block):
        greeting: str = "hello"

    try:
        Greeter(greting="hi")
    except ValueError as error:
        print(error)  # ... unknown field 'greting'; did you mean 'greeting'? ...
    ```
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Self

from pydantic import model_validator

from aiorch.core.models import AiorchModel

_loading_saved = ContextVar("aiorch_loading_saved_block", default=False)
# Keys Prefect itself puts in a block's data (nested-block dispatch, document metadata).
_PREFECT_KEYS = frozenset({"block_type_slug"})
logger = logging.getLogger("aiorch.blocks")


def unknown_field_message(model: str, unknown: str, fields: list[str]) -> str:
    """``model: unknown field 'x'; did you mean 'y'?`` (or the list of fields)."""
    close = difflib.get_close_matches(unknown, fields, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"the fields are {', '.join(fields)}"
    return f"{model}: unknown field {unknown!r}; {hint}"


@contextmanager
def loading_saved_documents() -> Iterator[None]:
    """While active, blocks drop fields they no longer have instead of failing."""
    token = _loading_saved.set(True)
    try:
        yield
    finally:
        _loading_saved.reset(token)


class StrictFields(AiorchModel):
    """Mixin for a ``Block``: unknown fields are errors, inputs are never echoed."""

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = sorted(cls.model_fields)
        unknown = [
            key
            for key in data
            if key not in cls.model_fields and key not in _PREFECT_KEYS and not key.startswith("_")
        ]
        if not unknown:
            return data
        if _loading_saved.get():
            logger.warning(
                "%s: a saved document has fields this version no longer has, ignored: %s",
                cls.__name__,
                ", ".join(unknown),
            )
            return {key: value for key, value in data.items() if key not in unknown}
        raise ValueError(
            "; ".join(unknown_field_message(cls.__name__, key, fields) for key in unknown)
        )

    @classmethod
    def _from_block_document(cls, block_document: Any) -> Self:
        with loading_saved_documents():
            block: Self = super()._from_block_document(block_document)  # type: ignore[misc]
        return block
