"""Prefect blocks that configure agent calls: agents and model providers.

Importing this package registers its block types with Prefect. The server imports
:mod:`aiorch.blocks` (every aiorch block, these and the Dagger engine) at start-up
through the ``prefect.collections`` entry point, so the blocks appear in the Prefect
UI's block catalogue without a ``prefect block register`` step.
"""

from aiorch.agent_blocks.agent import Agent, HistoryPolicy, McpServer
from aiorch.agent_blocks.provider import ModelProvider, ProviderKind, TokenPrice

__all__ = [
    "Agent",
    "HistoryPolicy",
    "McpServer",
    "ModelProvider",
    "ProviderKind",
    "TokenPrice",
]
