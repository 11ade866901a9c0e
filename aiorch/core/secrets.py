"""Where a secret is read from: a Prefect Secret block, an environment variable or a file.

A :class:`SecretRef` names the place, never the value; the value is read each time it is
used (:func:`aiorch.tasks.secrets.aresolve_secret`), so a rotated secret reaches the next
call without a restart. Files are how Docker and Kubernetes hand secrets to a container
(``/run/secrets/NAME``, a mounted Secret volume).

In text (an MCP server's ``secret_env``), ``env:NAME`` is a variable, ``file:PATH`` a
file, and anything else the name of a Secret block.

Example:
    ```python
    from aiorch.core.secrets import SecretRef, parse_secret_ref

    print(parse_secret_ref("env:OPENAI_API_KEY").name)  # env:OPENAI_API_KEY
    print(SecretRef(block="openai-key").name)  # openai-key
    ```
"""

from __future__ import annotations

from typing import Self

from pydantic import ConfigDict, Field, model_validator

from aiorch.core.models import AiorchModel

ENV_PREFIX = "env:"
FILE_PREFIX = "file:"


class SecretRef(AiorchModel):
    """A secret's place: exactly one of a Secret block, an environment variable, a file."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    block: str | None = Field(default=None, min_length=1, description="A Prefect Secret block.")
    env: str | None = Field(default=None, min_length=1, description="An environment variable.")
    file: str | None = Field(
        default=None, min_length=1, description="A file (a mounted Docker/Kubernetes secret)."
    )

    @model_validator(mode="after")
    def _one_place(self) -> Self:
        if sum(place is not None for place in (self.block, self.env, self.file)) != 1:
            raise ValueError(
                "a SecretRef names exactly one place: block='secret-block', "
                "env='VARIABLE' or file='/run/secrets/name'"
            )
        return self

    @property
    def name(self) -> str:
        """The block's name, ``env:NAME`` or ``file:PATH``: what access roles grant."""
        if self.env is not None:
            return ENV_PREFIX + self.env
        if self.file is not None:
            return FILE_PREFIX + self.file
        return str(self.block)

    @property
    def source(self) -> str:
        """Where the value comes from, as cache keys record it (never the value)."""
        return f"block:{self.block}" if self.block is not None else self.name


def parse_secret_ref(text: str) -> SecretRef:
    """``env:NAME``, ``file:PATH`` or a Secret block's name, as a :class:`SecretRef`."""
    if text.startswith(ENV_PREFIX):
        return SecretRef(env=text.removeprefix(ENV_PREFIX))
    if text.startswith(FILE_PREFIX):
        return SecretRef(file=text.removeprefix(FILE_PREFIX))
    return SecretRef(block=text)
