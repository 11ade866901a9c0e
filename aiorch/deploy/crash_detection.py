"""A flow run whose process died becomes Crashed, not Running forever.

Prefect marks a run Crashed only when its own process sees the crash; a process killed
by ``kill -9``, the OOM killer or a lost machine sees nothing, and the run stays
Running. Prefect's documented remedy, shipped here as code: flow processes emit
heartbeats (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``; Prefect's minimum, 30 s, is what
aiorch's deployments set), and a proactive automation sets a run Crashed when, after a
heartbeat, neither another heartbeat nor a final state arrives within
:data:`MISSED_HEARTBEATS` heartbeat intervals.

So a dead run is Crashed at most ``heartbeat interval x MISSED_HEARTBEATS`` (75 s)
after its last heartbeat, plus the server's evaluation of proactive triggers (a few
seconds). Runs without heartbeats (the setting unset) are not affected.

Example:
    ```python
    from aiorch.deploy.crash_detection import crash_detection_automation

    automation = crash_detection_automation()
    print(automation.name)  # aiorch: crash runs whose heartbeats stopped
    ```
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

from aiorch.deploy.automations import ensure_automation

HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
# Prefect's minimum heartbeat interval, and the value aiorch's deployments set.
HEARTBEAT_SECONDS = 30
MISSED_HEARTBEATS = 2.5
# The bound documented above: the window, plus the server's evaluation of proactive
# triggers (seen taking up to 5 s here; 15 s leaves room for a loaded machine).
CRASH_BOUND_SECONDS = HEARTBEAT_SECONDS * MISSED_HEARTBEATS + 15
FINAL_STATES = ("Completed", "Failed", "Cancelled", "Crashed", "TimedOut")
CRASH_AUTOMATION = "aiorch: crash runs whose heartbeats stopped"
CRASH_MESSAGE = "the flow run's process stopped sending heartbeats: it died (killed, OOM, lost)"


def crash_detection_automation(heartbeat_seconds: int = HEARTBEAT_SECONDS) -> AutomationCore:
    """The automation that sets a run Crashed when its heartbeats stop."""
    return AutomationCore(
        name=CRASH_AUTOMATION,
        description=(
            f"A flow run that sent a heartbeat and then, for {MISSED_HEARTBEATS:g} heartbeat "
            "intervals, neither a heartbeat nor a final state is marked Crashed."
        ),
        trigger=EventTrigger(
            after={HEARTBEAT_EVENT},
            expect={HEARTBEAT_EVENT, *(f"prefect.flow-run.{state}" for state in FINAL_STATES)},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=heartbeat_seconds * MISSED_HEARTBEATS),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, message=CRASH_MESSAGE)],
    )


async def install_crash_detection(heartbeat_seconds: int = HEARTBEAT_SECONDS) -> UUID:
    """Create or update the crash-detection automation on the current Prefect API."""
    return await ensure_automation(crash_detection_automation(heartbeat_seconds))
