"""The reference flow: broadcast, RPC, capability routing and a person, on the real bus and UI."""

from __future__ import annotations

import contextvars
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from aiorch.flows.agent_team import agent_team
from tests.test_messaging_people import DEADLINE_SECONDS, _answer, _paused_run


def _report(run_id: Any) -> str:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    return next(str(a.data) for a in artifacts if a.key == "aiorch-agent-team-run-report")


def test_the_team_broadcasts_asks_routes_and_waits_for_approval(
    prefect_api: str, scratch_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIORCH_DATA_DIR", str(scratch_dir))  # the run's own message store
    outcome: dict[str, Any] = {}

    def run() -> None:
        state = anyio.run(
            lambda: agent_team(
                brief="Name the release.",
                writers=2,
                agent_model="passthrough",
                approver="person:ada",
                return_state=True,
            )
        )
        outcome["state"] = state

    thread = threading.Thread(target=contextvars.copy_context().run, args=(run,))
    thread.start()
    try:
        paused = _paused_run("aiorch-agent-team", thread)
        _answer(paused.id, {"reply": "go", "approve": True})
    finally:
        thread.join(timeout=DEADLINE_SECONDS)
    state = outcome["state"]
    assert state.is_completed(), state.message
    result = anyio.run(state.aresult)
    assert result.drafts == ["Name the release.", "Name the release."]  # passthrough echoes
    assert result.review.startswith("Brief: Name the release.")
    assert (result.approved, result.comment) == (True, "go")

    report = _report(state.state_details.flow_run_id)
    assert "## Conversation" in report
    assert "sequenceDiagram" in report
    diagram = report.split("sequenceDiagram", 1)[1].split("```", 1)[0]
    arrows = [
        line.strip() for line in diagram.splitlines() if ":" in line and "participant" not in line
    ]
    events = [line for line in arrows if "-)" in line]
    replies = [line for line in arrows if "-->>" in line]
    requests = [line for line in arrows if "->>" in line and "-->>" not in line]
    assert len(events) == 2  # the broadcast, once per writer
    assert len(requests) == 3  # two drafts and the review
    assert len(replies) == 3
    assert "(to capability:review-" in diagram  # routed by capability
    assert "| from | to | handled by | kind | priority | waited (s) | took (s) |" in report


def test_the_team_on_the_local_model(
    prefect_api: str, local_model: str, scratch_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIORCH_DATA_DIR", str(scratch_dir))
    state = anyio.run(
        lambda: agent_team(brief="Name a tea.", writers=2, agent_model="local", return_state=True)
    )
    assert state.is_completed(), state.message
    result = anyio.run(state.aresult)
    assert len(result.drafts) == 2
    assert all(draft.strip() for draft in result.drafts)
    assert result.review.strip()
    assert result.approved is None
    assert "sequenceDiagram" in _report(state.state_details.flow_run_id)
