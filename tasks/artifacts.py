"""Publish an artifact for a given flow run or task run, from anywhere.

Prefect's ``create_*_artifact`` helpers read the run from the current run context; in
flow and task state hooks that context is gone (Prefect warns that this use is
deprecated), so aiorch's hooks name the run explicitly through the API instead.
Table data is sent JSON-encoded, as Prefect's own helper does.
"""

from __future__ import annotations

import json
from typing import Any, Literal
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate

ArtifactType = Literal["markdown", "table"]


async def publish_artifact(
    kind: ArtifactType,
    *,
    key: str,
    data: str | list[dict[str, Any]],
    description: str,
    flow_run_id: UUID | None,
    task_run_id: UUID | None = None,
) -> UUID:
    """Create a ``kind`` artifact keyed ``key`` on the given runs; its id."""
    payload = data if isinstance(data, str) else json.dumps(data, default=str)
    async with get_client() as client:
        created = await client.create_artifact(
            artifact=ArtifactCreate(
                type=kind,
                key=key,
                description=description,
                data=payload,
                flow_run_id=flow_run_id,
                task_run_id=task_run_id,
            )
        )
    return created.id
