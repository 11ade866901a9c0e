"""Create Prefect automations idempotently: one per name, updated in place.

Example:
    ```python
    from aiorch.deploy.automations import notification_action

    print(notification_action.__name__)  # notification_action
    ```
"""

from __future__ import annotations

from typing import cast
from uuid import UUID

from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import AutomationCore

from aiorch.core.errors import ConfigurationError
from aiorch.core.prefect_internals import block_document_id


async def notification_action(block_name: str, block_type: type[Block]) -> SendNotification:
    """A SendNotification action through the saved notification block ``block_name``.

    Raises:
        ConfigurationError: no such block; the message says how to create one.
    """
    try:
        block = cast(Block, await block_type.aload(block_name))
    except ValueError:
        raise ConfigurationError(
            f"there is no {block_type.__name__} block named {block_name!r}; create one, e.g. "
            f"{block_type.__name__}(name='aiorch', url='https://...').save({block_name!r})"
        ) from None
    return SendNotification(
        block_document_id=block_document_id(block),
        subject="aiorch alert: {{ event.event }}",
        body="{{ event.event }} about {{ event.resource.id }}: {{ event.payload }}",
    )


async def ensure_automation(automation: AutomationCore) -> UUID:
    """Create the automation, or update the one with the same name; its id."""
    async with get_client() as client:
        existing = await client.read_automations_by_name(automation.name)
        if existing:
            await client.update_automation(existing[0].id, automation)
            for duplicate in existing[1:]:
                await client.delete_automation(duplicate.id)
            return existing[0].id
        return await client.create_automation(automation)
