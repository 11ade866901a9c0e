"""``aiorch eval run``: the gate's exit codes, the JSON results and the summary artifact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from uuid import uuid4

import anyio
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from aiorch.agent_blocks import Agent
from aiorch.cli import main

ECHO_SET = "\n".join(
    [
        '{"id": "says-paris", "input": "Paris is the answer", "target": "paris"}',
        '{"id": "says-lima", "input": "The answer: Lima", "target": "Lima"}',
        '{"id": "no-answer", "input": "What is the capital of Japan?", "target": "Tokyo"}',
    ]
)


@pytest.fixture(scope="module")
def echo_block(prefect_api: str) -> str:
    name = f"eval-echo-{uuid4().hex[:8]}"
    Agent(instruction="Repeat the user.", model="passthrough").save(name)
    return name


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "echo.jsonl"
    path.write_text(ECHO_SET)
    return path


def _name() -> str:
    return f"cli-{uuid4().hex[:8]}"


def test_the_gate_passes_fails_and_writes_every_result(
    echo_block: str, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "results.json"
    common = [str(dataset), "--agent", echo_block, "--epochs", "2", "--pass-at", "2"]
    name = _name()
    assert (
        main(
            ["eval", "run", *common, "--name", name, "--min-score", "0.6", "--output", str(output)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert f"# Evaluation {name}" in printed
    assert "**Gate passed.**" in printed
    report = json.loads(output.read_text())
    assert report["verdict"] == {"exit_code": 0, "failures": []}
    assert [a["mean"] for a in report["evaluation"]["agents"]] == [pytest.approx(2 / 3)]
    assert len(report["evaluation"]["results"]) == 6
    assert main(["eval", "run", *common, "--name", name, "--min-score", "0.9"]) == 1
    printed = capsys.readouterr().out
    assert f"{echo_block}: mean score 0.667 is below 0.9" in printed
    assert "6 answers were replayed" in printed

    async def artifacts() -> list[str]:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"{name}-evaluation"]))
            )
        return [str(artifact.data) for artifact in found]

    published = anyio.run(artifacts)
    assert len(published) == 2  # one per run, under one key
    assert sum("mean score 0.667 is below 0.9" in data for data in published) == 1


def test_unscored_results_fail_the_gate_with_their_own_code(
    echo_block: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "no-target.jsonl"
    path.write_text('{"id": "a", "input": "x", "checks": [{"type": "exact"}]}\n')
    assert main(["eval", "run", str(path), "--agent", echo_block, "--name", _name()]) == 3
    assert "1 of 1 results could not be scored (allowed 0)" in capsys.readouterr().out
    allowed = ["--max-errors", "1", "--name", _name()]
    assert main(["eval", "run", str(path), "--agent", echo_block, *allowed]) == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--epochs", "0"], "epochs: must be at least 1"),
        (["--pass-at", "3"], "pass@k: k=3 must be between 1 and the epochs (1)"),
        (["--agent", "no-such-agent"], "--agent no-such-agent: "),
    ],
)
def test_bad_input_exits_2_in_one_line_before_any_run(
    echo_block: str,
    dataset: Path,
    arguments: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["eval", "run", str(dataset), "--agent", echo_block, *arguments]) == 2
    error = capsys.readouterr().err
    assert message in error
    assert "Traceback" not in error


def test_a_bad_dataset_line_exits_2_naming_it(
    echo_block: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "input": "x"}\n{"id": "b"}\n')
    assert main(["eval", "run", str(path), "--agent", echo_block]) == 2
    assert f"{path}:2: input: Field required" in capsys.readouterr().err


def test_the_installed_command_exits_with_the_gate(
    prefect_api: str, echo_block: str, dataset: Path
) -> None:
    command = [sys.executable, "-m", "aiorch.cli", "eval", "run", str(dataset)]
    done = subprocess.run(
        [*command, "--agent", echo_block, "--name", _name(), "--min-score", "1"],
        env={**os.environ, "PREFECT_API_URL": prefect_api},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "is below 1" in done.stdout


@pytest.mark.logs_errors("RecordingDrift")
def test_record_then_replay_from_the_command_line(
    echo_block: str, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fixture, results = tmp_path / "fixture.json", tmp_path / "results.json"
    common = ["eval", "run", str(dataset), "--agent", echo_block]
    assert main([*common, "--name", _name(), "--record", str(fixture)]) == 0
    recorded = json.loads(fixture.read_text())
    assert sorted(recorded["answers"][echo_block]) == ["no-answer", "says-lima", "says-paris"]
    replay = ["--name", _name(), "--replay", str(fixture), "--output", str(results)]
    assert main([*common, *replay]) == 0
    report = json.loads(results.read_text())
    assert [r["answer"]["text"] for r in report["evaluation"]["results"]] == [
        "What is the capital of Japan?",
        "The answer: Lima",
        "Paris is the answer",
    ]
    assert report["evaluation"]["agents"][0]["cache_hits"] == 3
    capsys.readouterr()
    changed = tmp_path / "changed.jsonl"
    changed.write_text(ECHO_SET.replace("Paris is the answer", "Paris, said the agent"))
    drifted = ["eval", "run", str(changed), "--agent", echo_block, "--name", _name()]
    assert main([*drifted, "--replay", str(fixture)]) == 3
    assert "1 of 3 results could not be scored" in capsys.readouterr().out
