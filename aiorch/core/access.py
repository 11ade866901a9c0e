"""Least privilege for agents and steps: what an access role grants, and nothing more.

An :class:`AccessRole` block lists the MCP tools an agent may call, the secrets an agent
or a container step may use, and whether a step may reach the network. An ``Agent``
block or a ``ContainerStep`` with a role gets exactly that: tools it does not grant are
not offered to the model, and a call to one anyway returns a tool error the model can
read (MCP's ``isError``) without running it; a step naming a secret its role lacks
fails before it starts. Without a role nothing is restricted (as before roles existed).

Names are matched with shell-style patterns: tools as the model sees them,
``SERVER__TOOL`` (``calc__*`` grants every tool of the ``calc`` server); secrets by the
Prefect Secret block a ``SecretRef`` names, or by the variable name of a secret given
inline.

Example:
    ```python
    from aiorch.core.access import AccessRole

    role = AccessRole(name="calculator", tools=["calc__add"], secrets=["calc-token"])
    print(role.allows_tool("calc__add"), role.allows_tool("calc__delete_all"))  # True False
    ```
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from prefect.blocks.core import Block
from pydantic import Field

from aiorch.core.blocks import StrictFields
from aiorch.core.errors import PermissionDenied

TOOL_DENIED_EVENT = "aiorch.access.tool-denied"


class AccessRole(StrictFields, Block):
    """What an agent or a container step may use."""

    _block_type_name = "aiorch Access Role"
    _block_type_slug = "aiorch-access-role"
    _description = "Least privilege for agents and steps: MCP tools, secrets, network access."

    name: str = Field(
        min_length=1,
        description="The role's name, as refusals and audit events name it.",
    )
    tools: list[str] = Field(
        default_factory=list,
        description="MCP tools an agent may call, as SERVER__TOOL patterns (calc__*).",
    )
    secrets: list[str] = Field(
        default_factory=list,
        description=(
            "Secrets an agent or step may use: Secret block names (of SecretRef) or the "
            "variable names of inline secrets; patterns allowed."
        ),
    )
    network: bool = Field(
        default=False,
        description=(
            "Whether a container step may reach the network (Docker steps run without one "
            "otherwise; runners that cannot cut it off refuse the step)."
        ),
    )

    def allows_tool(self, name: str) -> bool:
        """Whether the tool the model sees as ``name`` is granted."""
        return any(fnmatchcase(name, pattern) for pattern in self.tools)

    def allows_secret(self, name: str) -> bool:
        """Whether the secret ``name`` is granted."""
        return any(fnmatchcase(name, pattern) for pattern in self.secrets)

    def require_secret(self, name: str, field: str, holder: str) -> None:
        """Refuse the secret ``name`` that ``field`` of a ``holder`` asks for, unless granted.

        Raises:
            PermissionDenied: not granted (naming the field, the secret, this role, the fix).
        """
        if not self.allows_secret(name):
            raise PermissionDenied(
                f"{field} uses the secret {name!r}, which the role {self.name!r} does not "
                f"grant; add it to the role's secrets, or leave it out of the {holder}"
            )
