"""Evaluation runs that tests inspect afterwards (their artifacts, events, verdicts)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import anyio

from aiorch.flows.evaluate import evaluate_flow


def evaluation_run(**parameters: Any) -> UUID:
    """Run the evaluation flow with ``parameters``; the id of its Completed flow run."""
    state = anyio.run(lambda: evaluate_flow(**parameters, return_state=True))
    assert state.is_completed(), state.message
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    return run_id
