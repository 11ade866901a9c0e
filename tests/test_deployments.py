"""Deployments end to end: environments applied, `prefect deploy --all`, real workers.

A real Prefect server; `aiorch environment apply` (run twice: idempotent) creates the
process and Docker pools, variables and blocks; `prefect --no-prompt deploy --all` deploys
every flow of prefect.yaml from this checkout; a real process worker and a real Docker
worker (prefect-docker) run deployments to Completed, the Docker one in the flow image
built from the repository's Dockerfile on a locally built Debian base (nothing pulled).
Workers are stopped with SIGTERM; the containers they started are gone afterwards.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import docker
import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import FlowRun, State

from aiorch.agent_blocks.provider import LOCAL_MODEL
from aiorch.core.errors import ConfigurationError
from aiorch.deploy.crash_detection import (
    CRASH_BOUND_SECONDS,
    CRASH_MESSAGE,
    install_crash_detection,
)
from aiorch.deploy.environments import (
    AgentSpec,
    Environment,
    ProviderSpec,
    agent_block,
    apply_environment,
    load_environment,
    provider_block,
)
from aiorch.tasks.agents.local_model import local_model_installed
from aiorch.testing.workers import (
    RUN_DEADLINE_SECONDS,
    Worker,
    child_processes,
    creation_to_completion,
    pause_schedules,
    run_deployment,
)
from tests.processes import descendants, wait_until_gone
from tests.services import TEST_FLOW_IMAGE

ROOT = Path(__file__).resolve().parents[1]
WORKER_STOP_DEADLINE_SECONDS = 30.0


def _prefect_yaml() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return loaded


def _flows_in_repository() -> set[str]:
    """The entrypoint (``aiorch.flows.demo.demo_flow``) of each ``@flow`` in flows/."""
    found = set()
    for path in sorted((ROOT / "flows").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for decorator in node.decorator_list:
                    target = decorator.func if isinstance(decorator, ast.Call) else decorator
                    if isinstance(target, ast.Name) and target.id == "flow":
                        found.add(f"aiorch.flows.{path.stem}.{node.name}")
    return found


def test_every_flow_has_a_process_and_a_docker_deployment() -> None:
    deployments = _prefect_yaml()["deployments"]
    by_pool: dict[str, set[str]] = {}
    for deployment in deployments:
        by_pool.setdefault(deployment["work_pool"]["name"], set()).add(deployment["entrypoint"])
        if deployment["work_pool"]["name"] == "aiorch-docker":
            assert deployment["name"].endswith("-docker")
            assert deployment["pull"][0]["prefect.deployments.steps.set_working_directory"] == {
                "directory": "/opt/aiorch"
            }
            assert "schedules" not in deployment, "schedules run once, on the default pool"
    flows = _flows_in_repository()
    assert len(flows) >= 7
    assert by_pool == {"aiorch-process": flows, "aiorch-docker": flows}
    scheduled = {d["name"]: d["schedules"] for d in deployments if d.get("schedules")}
    assert scheduled == {
        "backup": [{"cron": "17 3 * * *"}],
        "breaker-states": [{"interval": 300}],
        "performance-dashboard": [{"interval": 3600}],
    }


def test_every_entrypoint_loads_in_a_fresh_interpreter() -> None:
    """A worker imports an entrypoint first thing: import cycles show only this way."""
    entrypoints = sorted(_flows_in_repository())
    processes = {
        entrypoint: subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from prefect.flows import load_flow_from_entrypoint; "
                "print(load_flow_from_entrypoint(sys.argv[1]).name)",
                entrypoint,
            ],
            # Outside the checkout: the entrypoint must come from the installed package.
            cwd=tempfile.gettempdir(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for entrypoint in entrypoints
    }
    for entrypoint, process in processes.items():
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, f"{entrypoint}: {err[-2000:]}"
        assert out.strip().startswith("aiorch-"), entrypoint


def test_environments_differ_only_by_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    from aiorch.deploy.environments import base_job_template, provider_block

    environments = {name: load_environment(name) for name in ("dev", "staging", "prod")}
    canary = f"sk-canary-{uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", canary)
    for environment in environments.values():
        assert set(environment.work_pools) == {"aiorch-process", "aiorch-docker"}
        assert set(environment.blocks.agents) == {"aiorch-assistant"}
        for pool, spec in environment.work_pools.items():
            template = asyncio.run(base_job_template(pool, spec))
            defaults = {
                key: value["default"]
                for key, value in template["variables"]["properties"].items()
                if key in spec.job_variables
            }
            assert defaults == spec.job_variables
            assert defaults["env"]["AIORCH_ENVIRONMENT"] == environment.name
        for name, provider in environment.blocks.providers.items():
            block = provider_block(name, provider)
            if provider.api_key_env:
                assert block.api_key is not None
                assert block.api_key.get_secret_value() == canary
                assert canary not in repr(block)
    assert environments["dev"].profile is None
    assert environments["prod"].profile == "aiorch-prod"


def test_bad_environment_files_name_the_field_and_the_fix(tmp_path: Path) -> None:
    dev = yaml.safe_load((ROOT / "deployments/environments/dev.yaml").read_text())
    dev["work_pools"]["aiorch-docker"]["job_variables"]["imgae"] = "x"
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump(dev))
    from aiorch.deploy.environments import base_job_template

    environment = load_environment(typo)
    with pytest.raises(ConfigurationError, match=r"aiorch-docker.job_variables: \['imgae'\]"):
        asyncio.run(base_job_template("aiorch-docker", environment.work_pools["aiorch-docker"]))

    dev["work_pools"]["aiorch-docker"]["type"] = "kubernetes-ish"
    typo.write_text(yaml.safe_dump(dev))
    with pytest.raises(ConfigurationError, match=r"work_pools.aiorch-docker.type"):
        load_environment(typo)
    with pytest.raises(ConfigurationError, match=r"environments here are \['dev', 'prod'"):
        load_environment("nowhere")

    agent = AgentSpec(instruction="x", model="passthrough", temprature=0.2)
    with pytest.raises(ConfigurationError, match=r"blocks.agents.a: .*did you mean 'temperature'"):
        asyncio.run(agent_block("a", agent))
    provider = ProviderSpec(kind="openai", base_ulr="http://127.0.0.1:1/v1")
    with pytest.raises(ConfigurationError, match=r"blocks.providers.p: .*did you mean 'base_url'"):
        provider_block("p", provider)

    keyed = yaml.safe_load((ROOT / "deployments/environments/prod.yaml").read_text())
    keyed["blocks"]["providers"]["aiorch-openai"]["api_key"] = "sk-in-the-file"
    leaky = tmp_path / "leaky.yaml"
    leaky.write_text(yaml.safe_dump(keyed))
    with pytest.raises(ConfigurationError, match="never write keys in environment files"):
        asyncio.run(apply_environment(load_environment(leaky).model_copy(update={"profile": None})))


# --- against a real server -------------------------------------------------------------


def _subprocess_env(api_url: str, scratch: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "PREFECT_API_URL": api_url,
        "PWD": str(ROOT),
        # Workers poll every 10 s by default; the measurements below note this setting.
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "AIORCH_OUTPUT_DIR": str(scratch / "outputs"),
        "AIORCH_DATA_DIR": str(scratch / "data"),
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def _aiorch(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiorch.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _environment_file(scratch: Path, image: str, volume: str) -> Path:
    """The dev environment with the test's image and data volume (users' stay untouched)."""
    dev = yaml.safe_load((ROOT / "deployments/environments/dev.yaml").read_text())
    docker_pool = dev["work_pools"]["aiorch-docker"]["job_variables"]
    docker_pool["image"] = image
    docker_pool["volumes"] = [f"{volume}:/var/lib/aiorch"]
    path = scratch / "dev-test.yaml"
    path.write_text(yaml.safe_dump(dev))
    return path


def _report_timings(pool: str, demo: FlowRun, quick: FlowRun) -> None:
    """Printed for the record (pytest -s); bench/pools.py measures it properly."""
    print(
        f"{pool} pool, creation to completion: demo {creation_to_completion(demo):.1f} s, "
        f"breaker-states {creation_to_completion(quick):.1f} s"
    )


@pytest.fixture(scope="module")
def deployed(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The dev environment applied twice and every deployment of prefect.yaml deployed."""
    scratch = tmp_path_factory.mktemp("deployments")
    volume = f"aiorch-test-data-{uuid4().hex[:8]}"
    environment = _environment_file(scratch, TEST_FLOW_IMAGE, volume)
    env = _subprocess_env(prefect_api, scratch)
    first = _aiorch(env, "environment", "apply", str(environment))
    assert first.returncode == 0, first.stderr
    assert "work pool aiorch-docker (docker) created" in first.stdout
    with get_client(sync_client=True) as client:
        pool_ids = {
            name: client.read_work_pool(name).id for name in ("aiorch-process", "aiorch-docker")
        }
    again = _aiorch(env, "environment", "apply", str(environment))
    assert again.returncode == 0, again.stderr
    assert "work pool aiorch-docker (docker) updated" in again.stdout
    deploy = subprocess.run(
        ["prefect", "--no-prompt", "deploy", "--all"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
    with get_client(sync_client=True) as client:
        assert {name: client.read_work_pool(name).id for name in pool_ids} == pool_ids
        docker_pool = client.read_work_pool("aiorch-docker")
        image = docker_pool.base_job_template["variables"]["properties"]["image"]["default"]
        assert image == TEST_FLOW_IMAGE
        assert pause_schedules(client) == {
            "backup": "17 3 * * *",
            "breaker-states": timedelta(seconds=300),
            "performance-dashboard": timedelta(seconds=3600),
        }
    try:
        yield scratch
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            docker.from_env().volumes.get(volume).remove(force=True)


def test_prefect_deploy_all_deploys_every_flow(deployed: Path) -> None:
    expected = {f"{deployment['name']}" for deployment in _prefect_yaml()["deployments"]}
    with get_client(sync_client=True) as client:
        names = {deployment.name for deployment in client.read_deployments()}
    assert expected <= names


def test_process_worker_runs_deployments(deployed: Path, prefect_api: str) -> None:
    env = _subprocess_env(prefect_api, deployed)
    worker = Worker("aiorch-process", "process", env, deployed / "process-worker.log", ROOT)
    try:
        run = worker.complete("aiorch-demo/demo", {"top": 3})
        quick = worker.complete("aiorch-breaker-states/breaker-states")
        _report_timings("process", run, quick)

        missing = run_deployment("aiorch-ask-agent/ask-agent", {"agent": "no-such-agent"})
        assert missing.state is not None
        assert missing.state.is_failed()
        message = missing.state.message or ""
        assert "aiorch Agent block 'no-such-agent' does not exist" in message
        assert "aiorch block create agent no-such-agent --model MODEL" in message

        if local_model_installed():
            # The block the environment created, on the real local model.
            asked = worker.complete("aiorch-ask-agent/ask-agent")
            with get_client(sync_client=True) as client:
                artifacts = client.read_artifacts(
                    artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["aiorch-answer"])),
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[asked.id])),
                )
            assert len(artifacts) == 1
            assert f"({LOCAL_MODEL})" in str(artifacts[0].data)
    finally:
        worker.stop()
    assert worker.stopped_by_its_signal_handler(), worker.log.read_text()[-3000:]


@pytest.fixture(scope="module")
def flow_image(deployed: Path, test_flow_image: str) -> str:
    """The session's flow image, once the deployments that name it exist."""
    return test_flow_image


def test_docker_worker_runs_deployments_in_the_flow_image(
    deployed: Path, flow_image: str, prefect_api: str
) -> None:
    client = docker.from_env()
    env = _subprocess_env(prefect_api, deployed)
    started = int(time.time()) - 1
    worker = Worker("aiorch-docker", "docker", env, deployed / "docker-worker.log", ROOT)
    try:
        run = worker.complete("aiorch-demo/demo-docker", {"top": 3})
        quick = worker.complete("aiorch-breaker-states/breaker-states-docker")
        _report_timings("docker", run, quick)
        label = f"io.prefect.flow-run-id={run.id}"
        deadline = time.monotonic() + 30
        while client.containers.list(all=True, filters={"label": label}):
            assert time.monotonic() < deadline, "the flow run's container was not removed"
            time.sleep(0.5)
        created = client.events(
            since=started,
            until=int(time.time()) + 1,
            decode=True,
            filters={"type": "container", "event": "create", "label": label},
        )
        images = [event["Actor"]["Attributes"]["image"] for event in created]
        assert images == [flow_image], "the run did not get exactly one container of the image"
    finally:
        worker.stop()
        client.close()
    assert worker.stopped_by_its_signal_handler(), worker.log.read_text()[-3000:]


def test_block_create_commands_save_blocks_and_name_what_is_missing(
    prefect_api: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from prefect.blocks.system import Secret

    from aiorch.agent_blocks import Agent, ModelProvider
    from aiorch.cli import main
    from aiorch.tasks.blocks import load_block

    suffix = uuid4().hex[:8]
    canary = f"canary-{uuid4().hex}"
    monkeypatch.setenv("AIORCH_TEST_KEY", canary)
    orphan = ["block", "create", "agent", f"a-{suffix}", "--model", "passthrough"]
    assert main([*orphan, "--provider", f"p-{suffix}"]) == 2
    error = capsys.readouterr().err
    assert f"Model Provider block 'p-{suffix}' does not exist on the Prefect server at" in error
    assert f"`aiorch block create provider p-{suffix} --kind KIND" in error

    provider = ["block", "create", "provider", f"p-{suffix}", "--kind", "openai"]
    assert main([*provider, "--api-key-env", "AIORCH_TEST_NOPE"]) == 2
    assert "AIORCH_TEST_NOPE, which is not set" in capsys.readouterr().err
    assert main([*provider, "--api-key-env", "AIORCH_TEST_KEY"]) == 0
    assert main([*orphan, "--provider", f"p-{suffix}"]) == 0
    secret = ["block", "create", "secret", f"s-{suffix}", "--from-env", "AIORCH_TEST_KEY"]
    assert main(secret) == 0
    printed = capsys.readouterr()
    assert canary not in printed.out + printed.err

    agent = load_block(Agent, f"a-{suffix}")
    assert isinstance(agent.provider, ModelProvider)
    assert agent.provider.api_key is not None
    assert agent.provider.api_key.get_secret_value() == canary
    assert load_block(Secret, f"s-{suffix}").get() == canary


def test_environment_apply_checks_everything_before_writing(
    prefect_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.exceptions import ObjectNotFound

    pool = f"aiorch-untouched-{uuid4().hex[:8]}"
    monkeypatch.delenv("AIORCH_TEST_UNSET", raising=False)
    environment = Environment.model_validate(
        {
            "name": "check",
            "work_pools": {pool: {"type": "process"}},
            "variables": {"aiorch_untouched": True},
            "blocks": {"secrets": {"token": {"from_env": "AIORCH_TEST_UNSET"}}},
        }
    )
    with pytest.raises(ConfigurationError, match=r"secrets.token.from_env .*AIORCH_TEST_UNSET"):
        asyncio.run(apply_environment(environment))
    wrong_profile = environment.model_copy(update={"profile": "aiorch-nowhere"})
    with pytest.raises(
        ConfigurationError,
        match="PREFECT_PROFILE=aiorch-nowhere aiorch environment apply check",
    ):
        asyncio.run(apply_environment(wrong_profile))
    with get_client(sync_client=True) as client:
        with pytest.raises(ObjectNotFound):
            client.read_work_pool(pool)
        assert client.read_variable_by_name("aiorch_untouched") is None


def test_killed_worker_runs_become_crashed(deployed: Path, prefect_api: str) -> None:
    """A worker's flow process killed: the worker reports Crashed. The worker killed with
    it (a lost machine): the heartbeat automation does, within the documented bound."""
    automation = asyncio.run(install_crash_detection())
    env = _subprocess_env(prefect_api, deployed)
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("aiorch-resume-test")
        deployment = client.create_deployment(
            flow_id,
            f"crash-{uuid4().hex[:6]}",
            entrypoint="tests/resume_flow.py:three_steps",
            work_pool_name="aiorch-process",
            pull_steps=[
                {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}
            ],
        )
    worker = Worker("aiorch-process", "process", env, deployed / "crash-worker.log", ROOT)
    try:
        flow_process, run_id, left = _run_to_step_three(deployment, worker, deployed / "one")
        os.kill(flow_process, signal.SIGKILL)
        wait_until_gone(left, deadline_seconds=15)
        state = _wait_for_state(run_id, "Crashed", deadline_seconds=60)
        assert "Process exited with status code: -9" in (state.message or ""), state.message

        flow_process, run_id, left = _run_to_step_three(deployment, worker, deployed / "two")
        for pid in (worker.process.pid, flow_process):
            os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        worker.process.wait(timeout=30)
        wait_until_gone(left, deadline_seconds=15)
        state = _wait_for_state(run_id, "Crashed", deadline_seconds=CRASH_BOUND_SECONDS)
        assert state.message == CRASH_MESSAGE
        print(f"lost worker: Crashed {time.monotonic() - killed:.1f} s after kill -9")
    finally:
        if worker.process.poll() is None:
            worker.stop()
        with get_client(sync_client=True) as client:
            client.delete_deployment(deployment)
        asyncio.run(_delete_automation(automation))


def _run_to_step_three(
    deployment: UUID, worker: Worker, scratch: Path
) -> tuple[int, UUID, set[int]]:
    """Start a resume-flow run; once its last step runs, the flow's pid, the run's id and
    every process below the worker.
    """
    scratch.mkdir()
    ledger = scratch / "ledger"
    parameters = {
        "output_dir": str(scratch / "out"),
        "gate": str(scratch / "gate"),
        "ledger": str(ledger),
    }
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(deployment, parameters=parameters)
    deadline = time.monotonic() + RUN_DEADLINE_SECONDS
    while not ledger.exists():
        assert worker.process.poll() is None, worker.log.read_text()[-3000:]
        assert time.monotonic() < deadline, worker.log.read_text()[-3000:]
        time.sleep(0.2)
    flows = child_processes(worker.process.pid)
    assert len(flows) == 1, flows
    return flows[0], run.id, descendants(worker.process.pid)


def _wait_for_state(run_id: UUID, name: str, deadline_seconds: float) -> State[Any]:
    started = time.monotonic()
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(run_id).state
            assert state is not None
            if state.name == name:
                return state
            elapsed = time.monotonic() - started
            assert elapsed < deadline_seconds, f"{state.name} {elapsed:.0f} s on: {state.message}"
            time.sleep(1)


async def _delete_automation(automation: UUID) -> None:
    async with get_client() as client:
        await client.delete_automation(automation)
