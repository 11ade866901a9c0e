"""Names and shared parts of the Prefect events aiorch emits."""

from __future__ import annotations

MODEL_USAGE_EVENT = "aiorch.model.usage"
BACKUP_COMPLETED_EVENT = "aiorch.backup.completed"


def related_flow_run(flow_run_id: object | None) -> list[dict[str, str]]:
    """The ``related`` list that ties an event to its flow run (empty outside one)."""
    if not flow_run_id:
        return []
    return [
        {
            "prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
            "prefect.resource.role": "flow-run",
        }
    ]
