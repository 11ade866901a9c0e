"""The CI/CD template: the workflow against GitHub's schema, the script run for real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from aiorch.agent_blocks import Agent
from aiorch.core.services import free_port
from aiorch.testing.prefect_server import running_server

ROOT = Path(__file__).parents[1]
CICD = ROOT / "deployments" / "cicd"


def _check_workflow(path: Path) -> subprocess.CompletedProcess[str]:
    checker = Path(sys.executable).with_name("check-jsonschema")
    return subprocess.run(
        [str(checker), "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_workflow_follows_githubs_schema(scratch_dir: Path) -> None:
    checked = _check_workflow(CICD / "github-actions.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The check can fail: a job without `runs-on` is not a workflow.
    broken = scratch_dir / "broken.yml"
    broken.write_text("on: push\njobs:\n  check:\n    steps:\n      - run: true\n")
    assert _check_workflow(broken).returncode != 0


def test_every_workflow_job_runs_a_stage_of_the_script() -> None:
    workflow = (CICD / "github-actions.yml").read_text()
    for stage in ("check", "image", "deploy"):
        assert f"deployments/cicd/pipeline.sh {stage}" in workflow


def _pipeline(api_url: str, eval_arguments: str, *stage: str) -> subprocess.CompletedProcess[str]:
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PREFECT_API_URL": api_url,
        "PIPELINE_LINT": "ruff check aiorch/backup deployments",
        "PIPELINE_TEST": "python -m pytest -q -p no:cacheprovider tests/test_settings.py",
        "PIPELINE_EVAL": eval_arguments,
        "PIPELINE_DEPLOY": "--name breaker-states",
    }
    return subprocess.run(
        [str(CICD / "pipeline.sh"), *stage],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _deployments() -> set[str]:
    with get_client(sync_client=True) as client:
        return {deployment.name for deployment in client.read_deployments()}


def test_the_pipeline_script_gates_then_deploys_to_a_real_server(scratch_dir: Path) -> None:
    assert shutil.which("bash")
    with (
        running_server(scratch_dir / "home", free_port()) as api_url,
        temporary_settings(updates={PREFECT_API_URL: api_url}),
    ):
        Agent(instruction="Repeat the question.", model="passthrough").save("pipeline-echo")
        dataset = "tests/data/eval/capitals.jsonl --agent pipeline-echo"

        failed = _pipeline(api_url, f"{dataset} --min-score 0.5", "all", "dev")
        output = failed.stdout + failed.stderr
        assert failed.returncode == 1, output
        assert "== pipeline: lint" in output
        assert "== pipeline: tests" in output
        assert "== pipeline: evaluation gate" in output
        assert "== pipeline: deploy" not in output  # the gate stopped it
        assert _deployments() == set()

        passed = _pipeline(api_url, f"{dataset} --min-score 0", "all", "dev")
        output = passed.stdout + passed.stderr
        assert passed.returncode == 0, output[-3000:]
        assert "== pipeline: image: skipped (PIPELINE_IMAGE is not set)" in output
        assert "== pipeline: all: done" in output
        assert _deployments() == {"breaker-states"}

        unknown = _pipeline(api_url, "", "ship")
        assert unknown.returncode == 2
        assert "unknown stage 'ship' (check, image, deploy or all)" in unknown.stderr
