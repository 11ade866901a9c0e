"""The data pipeline on every runner: right numbers, fan-out, cache hits with outputs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)

from aiorch.flows.data_pipeline import ARTIFACT_KEY, RegionSummary, data_pipeline, zone_table
from aiorch.tasks.container import RunnerKind
from tests.services import TEST_BUSYBOX_IMAGE

ROOT = Path(__file__).resolve().parents[1]


def expected_regions() -> list[RegionSummary]:
    """The same summary computed in Python, independently of the containers' awk."""
    regions: dict[str, list[list[str]]] = {}
    for line in zone_table().read_text().splitlines():
        if line and not line.startswith("#"):
            fields = line.split("\t")
            regions.setdefault(fields[2].split("/")[0], []).append(fields)
    summaries = []
    for region, rows in sorted(regions.items()):
        latitudes = [
            (-1 if row[1][0] == "-" else 1) * (int(row[1][1:3]) + int(row[1][3:5]) / 60)
            for row in rows
        ]
        summaries.append(
            RegionSummary(
                region=region,
                zones=len(rows),
                countries=len({code for row in rows for code in row[0].split(",")}),
                min_latitude=round(min(latitudes), 2),
                max_latitude=round(max(latitudes), 2),
            )
        )
    return summaries


@pytest.fixture(params=["local", "docker", "dagger"])
def pipeline_runner(request: pytest.FixtureRequest) -> tuple[str, str]:
    if request.param == "docker":
        return "docker", str(request.getfixturevalue("busybox_image"))
    if request.param == "dagger":
        request.getfixturevalue("dagger_double")
    return str(request.param), TEST_BUSYBOX_IMAGE


def test_pipeline_is_right_then_served_from_cache(
    prefect_api: str, pipeline_runner: tuple[str, str], scratch_dir: Path
) -> None:
    runner, image = pipeline_runner
    output = scratch_dir / "out"
    first = data_pipeline(runner=RunnerKind(runner), image=image, output_dir=output)
    assert first.regions == expected_regions()
    assert len(first.steps) == len(first.regions) + 1
    assert {step.runner.value for step in first.steps} == {runner}

    shutil.rmtree(output)
    second = data_pipeline(runner=RunnerKind(runner), image=image, output_dir=output)
    assert second.cache_hits == len(second.steps)
    assert second.regions == first.regions
    assert second.summary_csv.read_text() == first.summary_csv.read_text()

    with get_client(sync_client=True) as client:
        tables = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY]))
        )
    assert tables
    assert tables[0].type == "table"


def _execute_states(run_id: str) -> list[str]:
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(run_id)]))
        )
    return sorted(str(run.state.name) for run in task_runs if run.state and "-execute-" in run.name)


@pytest.mark.parametrize("runner", ["local", "docker"])
def test_command_line_reruns_an_unchanged_pipeline_from_cache(
    prefect_api: str, runner: str, scratch_dir: Path, request: pytest.FixtureRequest
) -> None:
    image = request.getfixturevalue("busybox_image") if runner == "docker" else "unused"
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    output = scratch_dir / "cli"
    command = [
        *[sys.executable, "-m", "aiorch.cli", "run", "data-pipeline", "--runner", runner],
        *["--param", f"output_dir={output}", "--param", f"image={image}"],
    ]
    run_ids = []
    for _ in range(2):
        shutil.rmtree(output, ignore_errors=True)
        run = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert "state: Completed" in run.stdout
        assert (output / "merge-regions" / "out" / "regions.csv").exists()
        run_ids.append(run.stdout.split("flow run id: ")[1].split()[0])
    # The first run may already hit results an earlier test stored for the same content.
    assert _execute_states(run_ids[1]) == ["Cached"] * 10


def test_command_line_checks_parameters_and_lists_runners(prefect_api: str) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    aiorch = [sys.executable, "-m", "aiorch.cli"]

    wrong = subprocess.run(
        [*aiorch, "run", "data-pipeline", "--param", "colour=blue"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert wrong.returncode == 2
    assert "unknown parameter(s) ['colour']" in wrong.stderr
    assert "takes: cache, image, output_dir, runner" in wrong.stderr

    runners = subprocess.run(
        [*aiorch, "runners"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert runners.returncode == 0
    assert [line.split()[0] for line in runners.stdout.splitlines()] == [
        "dagger",
        "docker",
        "local",
    ]


def test_dagger_check_workflow(prefect_api: str, dagger_double: Path) -> None:
    from aiorch.flows.dagger_check import dagger_check

    result = dagger_check()
    assert result.engine_version == "v0.21.8"
    assert result.container_output == "container ok"
