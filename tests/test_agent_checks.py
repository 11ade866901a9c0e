"""The pytest helper: an agent test passes, fails with the reasons, and records a fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiorch.agent_blocks import Agent
from aiorch.testing.agent_checks import assert_agent_passes

ECHO_SET = "\n".join(
    [
        '{"id": "says-paris", "input": "Paris is the answer", "target": "paris"}',
        '{"id": "no-answer", "input": "What is the capital of Japan?", "target": "Tokyo"}',
    ]
)


def _echo(instruction: str = "Repeat the user.") -> Agent:
    return Agent(instruction=instruction, model="passthrough")


def test_an_agent_test_fails_with_each_failed_sample_and_why(
    prefect_api: str, tmp_path: Path
) -> None:
    path = tmp_path / f"echo-{tmp_path.name[-6:]}.jsonl"
    path.write_text(ECHO_SET)
    passed = assert_agent_passes(path, _echo(), min_score=0.5)
    assert passed.agents[0].mean == 0.5
    with pytest.raises(AssertionError) as failed:
        assert_agent_passes(path, _echo(), min_score=0.9)
    assert str(failed.value).splitlines() == [
        "passthrough: mean score 0.500 is below 0.9",
        "1 of 2 results failed:",
        "  no-answer (epoch 1): does not contain 'Tokyo'",
    ]


@pytest.mark.logs_errors("RecordingDrift")
def test_the_first_run_records_the_fixture_and_later_runs_replay_it(
    prefect_api: str, tmp_path: Path
) -> None:
    path = tmp_path / f"fixture-{tmp_path.name[-6:]}.jsonl"
    path.write_text(ECHO_SET)
    fixture = tmp_path / "echo.fixture.json"
    assert_agent_passes(path, _echo(), min_score=0.5, fixture=fixture)
    assert fixture.exists()
    replayed = assert_agent_passes(path, _echo(), min_score=0.5, fixture=fixture)
    assert replayed.agents[0].cache_hits == 2
    with pytest.raises(AssertionError, match="the instruction changed"):
        assert_agent_passes(path, _echo("Repeat, please."), min_score=0.5, fixture=fixture)
