"""Prefect blocks that configure aiorch: agents, model providers and the Dagger engine.

Importing this package registers its block types with Prefect; the server imports it at
start-up through the ``prefect.collections`` entry point, so the blocks appear in the
Prefect UI's block catalogue without a ``prefect block register`` step.
"""

from agent_blocks.agent import Agent, HistoryPolicy, McpServer
from agent_blocks.dagger_engine import DaggerEngine
from agent_blocks.provider import ModelProvider, ProviderKind, TokenPrice

__all__ = [
    "Agent",
    "DaggerEngine",
    "HistoryPolicy",
    "McpServer",
    "ModelProvider",
    "ProviderKind",
    "TokenPrice",
]
