"""The one resolver of secrets: a :class:`~aiorch.core.secrets.SecretRef` to its value.

Every read goes to the source (the Secret block, the environment, the file) at the
moment of use and is registered with the process's secret registry, so the value is
masked wherever it could be printed; nothing keeps it in between, so a rotated secret
is what the next call reads.

Example:
    ```python
    import anyio

    from aiorch.core.secrets import SecretRef
    from aiorch.tasks.secrets import aresolve_secret

    async def main() -> None:
        value = await aresolve_secret(SecretRef(env="HOME"), "secrets['HOME']")
        print(value != "")  # True

    anyio.run(main)
    ```
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

from prefect.blocks.system import Secret

from aiorch.core.errors import ConfigurationError
from aiorch.core.redaction import register_secret
from aiorch.core.secrets import SecretRef
from aiorch.tasks.blocks import MissingBlockError, aload_block


async def aresolve_secret(ref: SecretRef, field: str) -> str:
    """The value ``ref`` names, read now; ``field`` names it in errors.

    Raises:
        ConfigurationError: the block, variable or file is missing or unreadable (named
            with the fix; the value never).
    """
    if ref.block is not None:
        try:
            block = cast(Secret[Any], await aload_block(Secret, ref.block))
        except MissingBlockError as error:
            raise ConfigurationError(f"{field}: {error}") from None
        got = block.get()
        value = got if isinstance(got, str) else str(got)
    elif ref.env is not None:
        if ref.env not in os.environ:
            raise ConfigurationError(
                f"{field}: the environment variable {ref.env} is not set; set it where the "
                "flow runs (the worker's or the container's environment)"
            )
        value = os.environ[ref.env]
    else:
        path = Path(str(ref.file))
        try:
            # One trailing newline is how files are written, not part of the secret.
            value = path.read_text().removesuffix("\n")
        except OSError as error:
            raise ConfigurationError(
                f"{field}: the secret file {path} cannot be read ({error.strerror}); mount "
                "the secret there (a Docker or Kubernetes secret) or fix the path"
            ) from None
    register_secret(value)
    return value
