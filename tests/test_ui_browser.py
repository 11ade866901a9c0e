"""The demo's artifacts in the default Prefect UI, checked in a real headless browser.

Screenshots go to ``AIORCH_TEST_SCREENSHOTS`` (default: a temp dir of the session).
"""

from __future__ import annotations

import os
from pathlib import Path
from uuid import UUID, uuid4

import anyio
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from aiorch.flows.agent_team import agent_team
from aiorch.flows.dashboard import performance_dashboard
from aiorch.flows.demo import PROGRESS_KEY, demo_flow, ui_instructions
from aiorch.tasks.monitoring.charts import DPI
from aiorch.tasks.monitoring.run_report import TIMELINE_ALT, TIMELINE_FONT_SIZE
from tests.browser import chromium_path, opened
from tests.services import require_service

ROWS = "document.querySelectorAll('table tbody tr').length"
DIAGRAMS = (
    "[...document.querySelectorAll('svg[aria-roledescription]')]"
    ".map(svg => svg.getAttribute('aria-roledescription')).join(',')"
)
# The run report's timeline: its natural width, and the share of it the page shows.
READABLE_PIXELS = 11
TIMELINE = (
    f"[...document.images].filter(image => image.alt === '{TIMELINE_ALT}'"
    " && image.complete && image.naturalWidth > 0)"
    ".map(image => [image.naturalWidth, image.width / image.naturalWidth])[0]"
)
LOADED_IMAGES = (
    "[...document.images].filter(image => image.src.startsWith('data:image/png')"
    " && image.complete && image.naturalWidth > 0).length"
)


def _artifact_ids(run_id: UUID) -> dict[str, UUID]:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    return {artifact.key: artifact.id for artifact in artifacts if artifact.key}


@pytest.fixture
def screenshots(scratch_dir: Path) -> Path:
    folder = Path(os.environ.get("AIORCH_TEST_SCREENSHOTS", scratch_dir / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_the_demo_artifacts_render_in_the_prefect_ui(prefect_api: str, screenshots: Path) -> None:
    require_service("Chromium", chromium_path() is not None, "chromium is not installed")
    state = demo_flow(
        text="a b\nc d\ne f\n", chunk_lines=1, agent_model="passthrough", return_state=True
    )
    assert state.is_completed(), state.message
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    dashboard_state = anyio.run(lambda: performance_dashboard(hours=1, return_state=True))
    dashboard_run = dashboard_state.state_details.flow_run_id
    assert dashboard_run is not None
    ui = prefect_api.removesuffix("/api")
    demo = _artifact_ids(run_id)
    pages = {
        "run-report": demo["aiorch-demo-run-report"],
        "run-table": demo["aiorch-demo-run-table"],
        "demo": demo["aiorch-demo"],
        "progress": demo[PROGRESS_KEY],
        "dashboard": _artifact_ids(dashboard_run)["aiorch-performance-dashboard"],
    }
    found = {}
    for name, artifact_id in pages.items():
        with opened(f"{ui}/v2/artifacts/artifact/{artifact_id}") as page:
            if name == "run-report":
                found[name] = page.wait_for(f"({DIAGRAMS}).includes('flowchart') && {DIAGRAMS}")
                found["timeline"] = page.wait_for(TIMELINE)
                page.screenshot(screenshots / "run-report.png")
                page.evaluate(
                    f"document.querySelector('img[alt=\"{TIMELINE_ALT}\"]').scrollIntoView()"
                )
                page.screenshot(screenshots / "run-report-timeline.png")
                continue
            elif name == "run-table":
                found[name] = page.wait_for(f"{ROWS} >= 4 && {ROWS}")
            elif name == "progress":
                found[name] = page.wait_for("document.body.innerText.includes('Progress: 100%')")
            elif name == "demo":
                found[name] = page.wait_for(f"({DIAGRAMS}).includes('flowchart') && {DIAGRAMS}")
            else:
                found[name] = page.wait_for(f"{LOADED_IMAGES} >= 3 && {LOADED_IMAGES}")
            page.screenshot(screenshots / f"{name}.png")
    assert "flowchart-v2" in found["run-report"]
    # The timeline is an image: its labels, as the page scales it, are 11 px or larger.
    natural_width, shown = found["timeline"]
    label_pixels = TIMELINE_FONT_SIZE * DPI / 72 * shown
    assert natural_width >= 600
    assert label_pixels >= READABLE_PIXELS, f"timeline labels shown at {label_pixels:.1f} px"
    assert found["run-table"] >= 7  # 3 count-words, survey, merge, agent call, report, ...
    assert "flowchart" in found["demo"]
    assert found["dashboard"] == 3
    assert found["progress"] is True
    assert all((screenshots / f"{name}.png").stat().st_size > 5_000 for name in pages)

    # The link the demo prints opens the run in the V2 UI.
    link = ui_instructions(run_id, None).rsplit(" ", 1)[-1]
    assert "/v2/runs/flow-run/" in link
    with get_client(sync_client=True) as client:
        run_name = client.read_flow_run(run_id).name
    with opened(link) as page:
        shown_name = page.wait_for(f"document.body.innerText.includes('{run_name}')")
        page.screenshot(screenshots / "flow-run.png")
    assert shown_name is True


def test_a_conversation_renders_as_a_sequence_diagram_in_the_prefect_ui(
    prefect_api: str, screenshots: Path, scratch_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_service("Chromium", chromium_path() is not None, "chromium is not installed")
    monkeypatch.setenv("AIORCH_DATA_DIR", str(scratch_dir))
    state = anyio.run(
        lambda: agent_team(brief="Name the release.", agent_model="passthrough", return_state=True)
    )
    assert state.is_completed(), state.message
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    report = _artifact_ids(run_id)["aiorch-agent-team-run-report"]
    ui = prefect_api.removesuffix("/api")
    with opened(f"{ui}/v2/artifacts/artifact/{report}") as page:
        diagrams = page.wait_for(f"({DIAGRAMS}).includes('sequence') && {DIAGRAMS}")
        page.evaluate(
            "[...document.querySelectorAll('svg[aria-roledescription=\"sequence\"]')][0]"
            ".scrollIntoView()"
        )
        page.screenshot(screenshots / "conversation.png")
        actors = page.evaluate(
            "[...document.querySelectorAll('svg[aria-roledescription=\"sequence\"] text.actor')]"
            ".map(t => t.textContent).join('|')"
        )
    assert "sequence" in diagrams
    assert "agent:coordinator/" in actors
    assert "agent:reviewer/" in actors
    assert (screenshots / "conversation.png").stat().st_size > 5_000


def test_an_evaluation_summary_renders_in_the_prefect_ui(
    prefect_api: str, screenshots: Path, scratch_dir: Path
) -> None:
    require_service("Chromium", chromium_path() is not None, "chromium is not installed")
    from aiorch.agent_blocks import Agent
    from aiorch.flows.evaluate import evaluate_flow

    name = f"ui-echo-{uuid4().hex[:8]}"
    Agent(instruction="Repeat the user.", model="passthrough").save(name, overwrite=True)
    dataset = scratch_dir / "echo.jsonl"
    dataset.write_text(
        '{"id": "paris", "input": "Paris, of course", "target": "Paris"}\n'
        '{"id": "tokyo", "input": "What is the capital of Japan?", "target": "Tokyo"}\n'
    )
    state = anyio.run(
        lambda: evaluate_flow(
            dataset=str(dataset), agents=[name], epochs=2, name=name, return_state=True
        )
    )
    assert state.is_completed(), state.message
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    summary = _artifact_ids(run_id)[f"{name}-evaluation"]
    ui = prefect_api.removesuffix("/api")
    with opened(f"{ui}/v2/artifacts/artifact/{summary}") as page:
        rows = page.wait_for(f"{ROWS} >= 1 && {ROWS}")
        page.screenshot(screenshots / "evaluation.png")
        text = page.evaluate("document.body.innerText")
    assert rows == 1
    assert f"Evaluation {name}" in text
    assert "0.500 ± 0.500" in text
    assert "Gate passed." in text
    assert (screenshots / "evaluation.png").stat().st_size > 5_000
