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
from prefect.client.schemas.sorting import ArtifactSort

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


CITIES = ["Paris", "Lima", "Tokyo", "Nairobi", "Oslo", "Quito"]
# Six samples whose echo includes its target; the worse set's echoes miss every one.
BASELINE_SET = "\n".join(
    f'{{"id": "city-{i}", "input": "The city is {city}", "target": "{city}"}}'
    for i, city in enumerate(CITIES)
)
WORSE_SET = "\n".join(
    f'{{"id": "city-{i}", "input": "Which city is it?", "target": "{city}"}}'
    for i, city in enumerate(CITIES)
)


def _run_id(printed: str) -> str:
    return printed.split("flow run id: ", 1)[1].split()[0]


def test_a_baseline_run_fails_the_gate_on_a_regression_with_exit_4(
    echo_block: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, worse = tmp_path / "cities.jsonl", tmp_path / "worse" / "cities.jsonl"
    good.write_text(BASELINE_SET)
    worse.parent.mkdir()
    worse.write_text(WORSE_SET)
    name, output = _name(), tmp_path / "first.json"
    common = ["eval", "run", "--agent", echo_block, "--name", name]
    assert main([*common[:2], str(good), *common[2:], "--output", str(output)]) == 0
    baseline = _run_id(capsys.readouterr().out)

    # The same answers against themselves: no change, the gate passes.
    assert main([*common[:2], str(good), *common[2:], "--baseline", baseline]) == 0
    unchanged = capsys.readouterr().out
    assert "| +0.000 | +0.000 to +0.000 | no regression |" in unchanged
    assert f"Baseline: flow run {baseline}." in unchanged

    for reference in (baseline, str(output)):
        assert main([*common[:2], str(worse), *common[2:], "--baseline", reference]) == 4
        printed = capsys.readouterr().out
        assert f"{echo_block}: regressed against the baseline by 1.000" in printed
    report_key = f"{name}-evaluation"

    async def latest_report() -> str:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[report_key])),
                sort=ArtifactSort.CREATED_DESC,
                limit=1,
            )
        return str(found[0].data)

    report = anyio.run(latest_report)
    assert "## Against the baseline" in report
    assert "**regressed**" in report
    assert report.count("| regression: ") == 6
    # The second run against the worse set replayed the first one's answers: no latency.
    assert report.count("data:image/png;base64,") == 2
    assert "Every answer was replayed from an earlier run: no latency to chart." in report


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("6c1d7e0a-0000-4000-8000-000000000000", "no flow run 6c1d7e0a-"),
        ("no-such-file.json", "no-such-file.json is neither a flow run id nor a file"),
    ],
)
def test_a_bad_baseline_exits_2_before_any_answer(
    echo_block: str,
    dataset: Path,
    reference: str,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    arguments = ["eval", "run", str(dataset), "--agent", echo_block, "--baseline", reference]
    assert main(arguments) == 2
    error = capsys.readouterr().err
    assert f"aiorch eval: --baseline: {message}" in error
    assert "flow run id:" not in capsys.readouterr().out


def test_a_run_of_another_evaluation_is_no_baseline(
    echo_block: str, dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["eval", "run", str(dataset), "--agent", echo_block]
    assert main([*common, "--name", _name()]) == 0
    other = _run_id(capsys.readouterr().out)
    assert main([*common, "--name", _name(), "--baseline", other]) == 2
    assert f"flow run {other} published no scores of evaluation" in capsys.readouterr().err
