"""Load Prefect blocks by name, failing with the command that creates a missing one.

A deployment runs wherever its work pool is, often long after it was written: a block
it names may not exist on that server (a new environment, a typo, a deleted block).
Prefect's own message ("Unable to find block document named ...") names neither the
server nor the fix; :class:`MissingBlockError` says both.

Example:
    ```python
    from prefect.blocks.system import Secret

    from aiorch.tasks.blocks import MissingBlockError, load_block

    try:
        token = load_block(Secret, "github-token").get()
    except MissingBlockError as error:
        print(error)
    ```
"""

from __future__ import annotations

from typing import Any, cast

from prefect.blocks.core import Block
from prefect.settings import get_current_settings

from aiorch.core.errors import ConfigurationError

# How to create each kind of block aiorch loads by name, from the command line.
CREATE_COMMANDS = {
    "aiorch-agent": "aiorch block create agent {name} --model MODEL [--provider PROVIDER_BLOCK]",
    "aiorch-model-provider": (
        "aiorch block create provider {name} --kind KIND [--api-key-env VARIABLE]"
    ),
    "secret": "aiorch block create secret {name} --from-env VARIABLE",
}
ENVIRONMENT_HINT = (
    "; `aiorch environment apply ENVIRONMENT` creates every block that "
    "deployments/environments/ENVIRONMENT.yaml declares"
)


class MissingBlockError(ConfigurationError):
    """A block named in a flow, deployment or another block does not exist."""

    kind = "missing-block"
    title = "Missing block"
    status = 404

    def __init__(self, block_type: str, name: str, command: str, server: str) -> None:
        self.block_type = block_type
        self.name = name
        self.command = command
        super().__init__(
            f"{block_type} block {name!r} does not exist on {server}. Create it with "
            f"`{command}`{ENVIRONMENT_HINT}, or in the Prefect UI under Blocks."
        )

    def context(self) -> dict[str, Any]:
        """The block's type and name and the command that creates it."""
        return {"block_type": self.block_type, "block": self.name, "command": self.command}


def _server() -> str:
    api_url = get_current_settings().api.url
    return f"the Prefect server at {api_url}" if api_url else "Prefect's embedded server"


def _missing(block_type: type[Block], name: str, error: ValueError) -> Exception:
    if "Unable to find block document" not in str(error):
        return error
    slug = block_type.get_block_type_slug()
    template = CREATE_COMMANDS.get(slug, "prefect block create " + slug)
    return MissingBlockError(
        block_type.get_block_type_name(), name, template.format(name=name), _server()
    )


async def aload_block[BlockT: Block](block_type: type[BlockT], name: str) -> BlockT:
    """Load the ``block_type`` block ``name``.

    Raises:
        MissingBlockError: no such block; the message names the server and the command
            that creates the block.
    """
    try:
        return cast(BlockT, await block_type.aload(name))
    except ValueError as error:
        raise _missing(block_type, name, error) from None


def load_block[BlockT: Block](block_type: type[BlockT], name: str) -> BlockT:
    """Synchronous :func:`aload_block`."""
    try:
        return cast(BlockT, block_type.load(name))
    except ValueError as error:
        raise _missing(block_type, name, error) from None
