"""Every block type aiorch registers with Prefect.

The ``prefect.collections`` entry point names this module, so a Prefect server started
where aiorch is installed lists these blocks in its catalogue;
``prefect block register -m aiorch.blocks`` registers them with a server started
elsewhere.
"""

from aiorch.agent_blocks import Agent, ModelProvider
from aiorch.core.access import AccessRole
from aiorch.tasks.container.dagger_engine import DaggerEngine
from aiorch.tasks.messaging.routes import MessageRoutes

__all__ = ["AccessRole", "Agent", "DaggerEngine", "MessageRoutes", "ModelProvider"]
