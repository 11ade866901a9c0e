"""The demo's artifacts in the default Prefect UI, checked in a real headless browser.

Screenshots go to ``AIORCH_TEST_SCREENSHOTS`` (default: a temp dir of the session).
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from uuid import UUID, uuid4

import anyio
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from aiorch.flows.agent_team import agent_team
from aiorch.flows.dashboard import performance_dashboard
from aiorch.flows.demo import PROGRESS_KEY, demo_flow, ui_instructions
from aiorch.gateway.roles import Role
from aiorch.gateway.tokens import TokenStore
from aiorch.tasks.monitoring.charts import DPI
from aiorch.tasks.monitoring.run_report import TIMELINE_ALT, TIMELINE_FONT_SIZE
from aiorch.testing.gateway import GuardedServer
from tests.browser import chromium_path, opened
from tests.evaluations import evaluation_run
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


def test_an_evaluation_comparison_renders_in_the_prefect_ui(
    prefect_api: str, screenshots: Path, scratch_dir: Path
) -> None:
    require_service("Chromium", chromium_path() is not None, "chromium is not installed")
    from aiorch.agent_blocks import Agent

    name = f"ui-eval-{uuid4().hex[:8]}"
    echo, slow = f"{name}-echo", f"{name}-slow"
    Agent(instruction="Repeat the user.", model="passthrough").save(echo, overwrite=True)
    # FastAgent's slow model echoes after 3 s: a latency unlike the echo's to chart.
    Agent(instruction="Repeat the user.", model="slow").save(slow, overwrite=True)
    cities = ["Paris", "Lima", "Tokyo", "Oslo"]
    before, after = scratch_dir / "before.jsonl", scratch_dir / "after.jsonl"
    before.write_text(
        "".join(f'{{"id": "{c.lower()}", "input": "It is {c}", "target": "{c}"}}\n' for c in cities)
    )
    # Two samples now ask instead of telling: the echo misses them, a regression.
    after.write_text(
        before.read_text().replace("It is Tokyo", "Which city?").replace("It is Oslo", "Guess")
    )

    baseline_run = evaluation_run(dataset=str(before), agents=[echo], name=name)
    run_id = evaluation_run(
        dataset=str(after), agents=[echo, slow], name=name, baseline=str(baseline_run)
    )
    artifact = _artifact_ids(run_id)[f"{name}-evaluation"]
    ui = prefect_api.removesuffix("/api")
    with opened(f"{ui}/v2/artifacts/artifact/{artifact}") as page:
        charts = page.wait_for(f"{LOADED_IMAGES} >= 3 && {LOADED_IMAGES}")
        # The images decode before the page swaps its placeholder for the markdown: wait
        # for the text the user reads, not only for the charts.
        page.wait_for("document.body.innerText.includes('Samples that disagree')")
        # The UI may show its loading placeholder again while it refetches: the heading
        # on screen is what says the artifact is what the screenshot shows.
        heading = (
            f"[...document.querySelectorAll('h1')].some(h => h.innerText === 'Evaluation {name}')"
        )
        page.wait_for(heading)
        page.screenshot(screenshots / "evaluation.png")
        on_screen = page.evaluate(heading)
        text = page.evaluate("document.body.innerText")
        page.evaluate("document.images[1].scrollIntoView()")
        page.screenshot(screenshots / "evaluation-charts.png")
        page.evaluate(
            "[...document.querySelectorAll('h2')].find(h => h.innerText.includes("
            "'Samples that disagree')).scrollIntoView()"
        )
        page.screenshot(screenshots / "evaluation-disagreements.png")
        rows = page.evaluate(ROWS)
    assert on_screen
    assert charts == 3  # score, cost against score, latency: all decoded by the browser
    assert f"Evaluation {name}" in text
    assert "Against the baseline" in text
    assert text.count("regressed against the baseline") == 0  # two of four: within the interval
    assert f"regression: {echo} (1.00 → 0.00)" in text
    assert f"regression: {slow} (1.00 → 0.00)" in text
    assert rows == 2 + 2 + 2  # summary, baseline test, the two samples that regressed
    assert (screenshots / "evaluation.png").stat().st_size > 5_000


TYPE_INTO_PASSWORD = """
(() => {
  const input = document.querySelector('input[type=password]');
  const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
  setter.call(input, %s);
  input.dispatchEvent(new Event('input', {bubbles: true}));
  input.form.requestSubmit();
  return true;
})()
"""


def test_the_ui_logs_in_through_the_gateway_with_a_token(
    guarded: GuardedServer, screenshots: Path
) -> None:
    require_service("Chromium", chromium_path() is not None, "chromium is not installed")
    viewer = TokenStore(guarded.store_url).create(
        "ui-login", Role.VIEWER, expires_in=timedelta(hours=1)
    )
    with opened(f"{guarded.url}/v2/") as page:
        assert page.wait_for("!!document.querySelector('input[type=password]')")
        page.screenshot(screenshots / "gateway-login.png")
        page.evaluate(TYPE_INTO_PASSWORD % json.dumps("aiorch_000000000000_" + "x" * 43))
        refused = page.wait_for("document.body.innerText.includes('Invalid credentials')")
        page.evaluate(TYPE_INTO_PASSWORD % json.dumps(viewer.token.get_secret_value()))
        signed_in = page.wait_for("!document.querySelector('input[type=password]')")
        page.wait_for("document.body.innerText.includes('Flow Runs')")
        page.screenshot(screenshots / "gateway-signed-in.png")
        text = page.evaluate("document.body.innerText")
    assert refused
    assert signed_in
    assert "Authentication failed" not in text
    assert (screenshots / "gateway-signed-in.png").stat().st_size > 5_000
