"""The automations of aiorch, defined as code and created idempotently.

    python deployments/automations.py [--webhook-block aiorch-alerts]

Each run creates the automations below, or updates them in place (matched by name), so
it is safe to run on every deploy:

- crash detection, always: a flow run whose heartbeats stop (its process was killed)
  becomes Crashed (``aiorch.deploy.crash_detection``; the environments' pools turn
  heartbeats on);
- with ``--webhook-block``, alerts sent to a saved ``CustomWebhookNotificationBlock``
  (Prefect's webhook block): alert rules evaluated when flow runs end
  (``aiorch.tasks.monitoring.alerts``), circuit breakers opening, and flow runs that
  crashed.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from uuid import UUID

import anyio
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

from aiorch.deploy.automations import ensure_automation, notification_action
from aiorch.deploy.crash_detection import install_crash_detection
from aiorch.tasks.monitoring.alerts import FAILURE_RATE_EVENT, SLOW_STEP_EVENT

ALERT_AUTOMATION = "aiorch: alerts to webhook"
BREAKER_AUTOMATION = "aiorch: circuit breaker opened"
CRASHED_AUTOMATION = "aiorch: flow run crashed"


async def install(webhook_block: str | None) -> list[UUID]:
    """Create or update every aiorch automation (alerts only with a webhook); their ids."""
    ids = [await install_crash_detection()]
    if webhook_block is None:
        return ids
    notify = await notification_action(webhook_block, CustomWebhookNotificationBlock)
    automations = [
        AutomationCore(
            name=ALERT_AUTOMATION,
            description="A step slower than its baseline, or a flow failing too often.",
            trigger=EventTrigger(
                expect={SLOW_STEP_EVENT, FAILURE_RATE_EVENT},
                posture=Posture.Reactive,
                threshold=1,
                within=timedelta(0),
            ),
            actions=[notify],
        ),
        AutomationCore(
            name=BREAKER_AUTOMATION,
            description="A circuit breaker opened: calls to a dependency are being refused.",
            trigger=EventTrigger(
                expect={"aiorch.breaker.open"},
                posture=Posture.Reactive,
                threshold=1,
                within=timedelta(0),
            ),
            actions=[notify],
        ),
        AutomationCore(
            name=CRASHED_AUTOMATION,
            description=(
                "A flow run crashed: its process died (set Crashed by Prefect, or by the "
                "crash-detection automation when its heartbeats stopped)."
            ),
            trigger=EventTrigger(
                expect={"prefect.flow-run.Crashed"},
                posture=Posture.Reactive,
                threshold=1,
                within=timedelta(0),
            ),
            actions=[notify],
        ),
    ]
    return ids + [await ensure_automation(automation) for automation in automations]


def main(argv: list[str] | None = None) -> int:
    """Command line: install the automations against PREFECT_API_URL."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--webhook-block", help="name of a saved CustomWebhookNotificationBlock (for alerts)"
    )
    arguments = parser.parse_args(argv)
    try:
        ids = anyio.run(install, arguments.webhook_block)
    except ValueError as error:
        print(f"automations: {error}", file=sys.stderr)
        return 2
    print(f"{len(ids)} automations in place: {', '.join(map(str, ids))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
