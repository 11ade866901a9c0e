"""Prefect blocks that configure aiorch: model providers (and, later, agents and engines).

Importing this package registers its block types with Prefect; the server imports it at
start-up through the ``prefect.collections`` entry point, so the blocks appear in the
Prefect UI's block catalogue without a ``prefect block register`` step.
"""

from agent_blocks.provider import ModelProvider, ProviderKind

__all__ = ["ModelProvider", "ProviderKind"]
