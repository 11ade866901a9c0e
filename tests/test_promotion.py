"""Promotion gated by an evaluation, on a real Prefect server with real `prefect deploy`.

Evaluations on passthrough agents emit their verdicts; `aiorch promote` (a subprocess,
as users run it) reads them through the source environment's Prefect profile and either
refuses, leaving the deployment absent, or deploys it from a prefect.yaml through the
target's profile. Both profiles (in a temporary profiles file) point at the session's
server: the deployment's presence there is what each case checks.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID, uuid4

import anyio
import pytest
import yaml
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from aiorch.agent_blocks import Agent
from aiorch.core.errors import ConfigurationError, PromotionRefused
from aiorch.deploy.environments import Environment
from aiorch.deploy.promotion import (
    Promotion,
    check_may_promote,
    environments_of_promotion,
    target_process_environment,
)
from aiorch.flows.evaluate import evaluate_flow
from aiorch.tasks.evaluation.gate import Gate, Verdict
from aiorch.tasks.evaluation.verdicts import GateRecord, aread_gate
from tests.evaluations import evaluation_run

ROOT = Path(__file__).resolve().parents[1]
DEV_PROFILE, STAGING_PROFILE = "aiorch-test-dev", "aiorch-test-staging"


@dataclass(frozen=True)
class Setup:
    folder: Path
    deployment: str
    env: dict[str, str]

    def promote(
        self, evaluation: str, source: str = "dev", profile: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `aiorch promote` as a user does, under ``profile`` if one is given."""
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "aiorch.cli",
                "promote",
                self.deployment,
                "--from",
                str(self.folder / f"{source}.yaml"),
                "--evaluation",
                evaluation,
                "--prefect-file",
                str(self.folder / "prefect.yaml"),
            ],
            cwd=ROOT,
            env={**self.env, "PREFECT_PROFILE": profile} if profile else self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def deployed(self) -> bool:
        with get_client(sync_client=True) as client:
            try:
                client.read_deployment_by_name(f"aiorch-evaluate/{self.deployment}")
            except ObjectNotFound:
                return False
            return True


@pytest.fixture
def setup(prefect_api: str, scratch_dir: Path) -> Iterator[Setup]:
    """Two environments, dev promoting to staging, each behind its own Prefect profile."""
    deployment = f"promoted-{uuid4().hex[:8]}"
    for name, profile, promotes_to in (
        ("dev", DEV_PROFILE, "staging"),
        ("staging", STAGING_PROFILE, None),
    ):
        (scratch_dir / f"{name}.yaml").write_text(
            yaml.safe_dump({"name": name, "profile": profile, "promotes_to": promotes_to})
        )
    profiles = scratch_dir / "profiles.toml"
    profiles.write_text(
        f'active = "{DEV_PROFILE}"\n'
        f'[profiles.{DEV_PROFILE}]\nPREFECT_API_URL = "{prefect_api}"\n'
        f'[profiles.{STAGING_PROFILE}]\nPREFECT_API_URL = "{prefect_api}"\n'
    )
    (scratch_dir / "prefect.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "aiorch-promotion-test",
                "pull": [
                    {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}
                ],
                "deployments": [
                    {
                        "name": deployment,
                        "entrypoint": "aiorch.flows.evaluate.evaluate_flow",
                        "work_pool": {"name": "aiorch-process"},
                    }
                ],
            }
        )
    )
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name="aiorch-process", type="process"))
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PREFECT_API_URL", "PREFECT_PROFILE"}
    }
    env["PREFECT_PROFILES_PATH"] = str(profiles)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    yield Setup(scratch_dir, deployment, env)
    with get_client(sync_client=True) as client:
        try:
            found = client.read_deployment_by_name(f"aiorch-evaluate/{deployment}")
        except ObjectNotFound:
            return
        client.delete_deployment(found.id)


def _evaluated(folder: Path, agent: str, input_text: str, min_score: float | None) -> UUID:
    dataset = folder / f"{uuid4().hex[:8]}.jsonl"
    dataset.write_text(
        f'{{"id": "paris", "input": "{input_text}", "target": "Paris"}}\n'
        '{"id": "lima", "input": "It is Lima", "target": "Lima"}\n'
    )
    return evaluation_run(
        dataset=str(dataset),
        agents=[agent],
        name=f"promotion-{uuid4().hex[:8]}",
        min_score=min_score,
    )


@pytest.fixture
def echo(prefect_api: str) -> str:
    name = f"promote-echo-{uuid4().hex[:8]}"
    Agent(instruction="Repeat the user.", model="passthrough").save(name, overwrite=True)
    return name


def test_a_promotion_is_refused_unless_the_evaluation_passed_a_real_gate(
    setup: Setup, echo: str
) -> None:
    failed = _evaluated(setup.folder, echo, "Which city?", min_score=1.0)
    ungated = _evaluated(setup.folder, echo, "It is Paris", min_score=None)
    passed = _evaluated(setup.folder, echo, "It is Paris", min_score=0.9)

    refused = setup.promote(str(failed))
    assert refused.returncode == 1, refused.stderr
    assert f"evaluation {failed} (promotion-" in refused.stderr
    assert "failed its gate (exit code 1)" in refused.stderr
    assert "mean score 0.500 is below 1" in refused.stderr
    assert not setup.deployed()

    nothing_asked = setup.promote(str(ungated))
    assert nothing_asked.returncode == 1, nothing_asked.stderr
    assert "asked nothing of its scores (no --min-score, no --baseline)" in nothing_asked.stderr
    assert not setup.deployed()

    last = setup.promote(str(passed), source="staging")
    assert last.returncode == 2, last.stderr
    assert "environment 'staging' promotes to nothing" in last.stderr
    assert not setup.deployed()

    promoted = setup.promote(str(passed))
    assert promoted.returncode == 0, promoted.stdout[-3000:] + promoted.stderr[-3000:]
    assert f"deploying {setup.deployment} to staging (Prefect profile {STAGING_PROFILE})" in (
        promoted.stdout
    )
    assert f"promoted {setup.deployment}: dev -> staging" in promoted.stdout
    assert setup.deployed()


def test_the_source_environment_profile_must_be_active(setup: Setup) -> None:
    wrong = setup.promote(str(uuid4()), profile=STAGING_PROFILE)
    assert wrong.returncode == 2
    assert f"belongs to Prefect profile '{DEV_PROFILE}' but '{STAGING_PROFILE}' is active" in (
        wrong.stderr
    )
    missing = uuid4()
    unknown = setup.promote(str(missing))
    assert unknown.returncode == 2
    assert f"no flow run {missing} on this Prefect server" in unknown.stderr


def test_the_verdict_is_read_back_from_the_run_or_from_the_output_file(
    prefect_api: str, scratch_dir: Path, echo: str
) -> None:
    passed = _evaluated(scratch_dir, echo, "It is Paris", min_score=0.9)
    record = anyio.run(lambda: aread_gate(str(passed)))
    assert record.verdict.passed
    assert record.gate == Gate(min_score=0.9)
    assert record.agents == [echo]
    check_may_promote(record, str(passed))

    report = scratch_dir / "report.json"
    state = anyio.run(
        lambda: evaluate_flow(
            dataset=str(next(scratch_dir.glob("*.jsonl"))),
            agents=[echo],
            min_score=1.0,
            name="promotion-file",
            return_state=True,
        )
    )
    report.write_text(state.result().model_dump_json())
    from_file = anyio.run(lambda: aread_gate(str(report)))
    assert from_file.verdict == Verdict(exit_code=0)  # "It is Paris" contains Paris

    @flow
    def not_an_evaluation() -> int:
        return 1

    other = not_an_evaluation(return_state=True).state_details.flow_run_id
    with pytest.raises(ConfigurationError, match="emitted no verdict"):
        anyio.run(lambda: aread_gate(str(other), deadline_seconds=1.0))


def test_a_failed_or_empty_gate_is_refused_with_the_reason() -> None:
    failed = GateRecord(
        evaluation="capitals",
        agents=["assistant"],
        gate=Gate(min_score=0.8),
        verdict=Verdict(exit_code=4, failures=["assistant regressed against the baseline"]),
    )
    with pytest.raises(PromotionRefused, match=r"failed its gate \(exit code 4\): assistant"):
        check_may_promote(failed, "RUN")
    empty = failed.model_copy(update={"gate": Gate(), "verdict": Verdict(exit_code=0)})
    with pytest.raises(PromotionRefused, match="asked nothing"):
        check_may_promote(empty, "RUN")
    with_baseline = empty.model_copy(update={"baseline": "flow run 1"})
    check_may_promote(with_baseline, "RUN")


def test_the_target_server_is_reached_through_its_profile_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://source.example/api")
    monkeypatch.setenv("PREFECT_API_KEY", "source-key")
    record = GateRecord(
        evaluation="e", agents=["a"], gate=Gate(min_score=0.5), verdict=Verdict(exit_code=0)
    )
    promotion = Promotion(
        deployment="ask-agent",
        source="dev",
        target="staging",
        target_profile="aiorch-staging",
        evaluation="RUN",
        record=record,
    )
    env = target_process_environment(promotion)
    assert env["PREFECT_PROFILE"] == "aiorch-staging"
    assert "PREFECT_API_URL" not in env
    assert "PREFECT_API_KEY" not in env


def test_the_shipped_environments_promote_dev_to_staging_to_prod() -> None:
    dev, staging = environments_of_promotion(ROOT / "deployments/environments/dev.yaml")
    same, prod = environments_of_promotion(ROOT / "deployments/environments/staging.yaml")
    assert (dev.name, staging.name, same.name, prod.name) == ("dev", "staging", "staging", "prod")
    with pytest.raises(ConfigurationError, match="'prod' promotes to nothing"):
        environments_of_promotion(ROOT / "deployments/environments/prod.yaml")


def test_a_target_profile_this_machine_lacks_is_named_with_the_fix() -> None:
    target = Environment(name="staging", profile=f"aiorch-missing-{uuid4().hex[:8]}")
    with pytest.raises(ConfigurationError, match="which does not exist here: create it with"):
        target.require_profile_exists()
    Environment(name="dev").require_profile_exists()  # no profile: the server in use
