"""The compose stack brought up for real: deploy through it, restart a service, tear down.

Images are built here (no registry): the flow image with the postgres, rabbitmq and
model extras (shared with the Docker pool test), and Debian's PostgreSQL and RabbitMQ with the
official images' contracts. Two deployments run through it: one that only needs the
server, and the agent team, whose agents talk over the stack's RabbitMQ and answer with
the stack's model server. The stack runs under a project name of its own; afterwards no
container, volume or network of that project is left.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import UUID, uuid4

import docker
import httpx
import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings
from prometheus_client.parser import text_string_to_metric_families

from aiorch.agent_blocks.provider import LOCAL_MODEL
from aiorch.core.guardian import Guardian
from aiorch.core.services import free_port
from aiorch.deploy.images import build_postgres_image, build_rabbitmq_image
from aiorch.testing.prefect_server import flow_run_log_text
from tests.services import model_extra_installed, require_service

ROOT = Path(__file__).parents[1]
COMPOSE_FILE = ROOT / "deployments" / "compose" / "docker-compose.yml"
TEST_POSTGRES_IMAGE = "aiorch-test/postgres:latest"
TEST_RABBITMQ_IMAGE = "aiorch-test/rabbitmq:latest"
SERVICES = [
    "docker-worker",
    "gateway",
    "metrics",
    "model",
    "postgres",
    "prefect-server",
    "process-worker",
    "rabbitmq",
]


class Stack:
    """One compose project of the stack, driven with docker-compose."""

    def __init__(self, directory: Path, flow_image: str) -> None:
        self.project = f"aiorch-test-{uuid4().hex[:8]}"
        self.env_file = directory / ".env"
        self.gateway_port = free_port()
        self.metrics_port = free_port()
        self.settings = {
            "AIORCH_IMAGE": flow_image,
            "AIORCH_POSTGRES_IMAGE": TEST_POSTGRES_IMAGE,
            "AIORCH_RABBITMQ_IMAGE": TEST_RABBITMQ_IMAGE,
            "AIORCH_POSTGRES_PASSWORD": uuid4().hex,
            "AIORCH_RABBITMQ_PASSWORD": uuid4().hex,
            "AIORCH_UPSTREAM_AUTH_STRING": f"gateway:{uuid4().hex}",
            "AIORCH_WORKER_AUTH_STRING": "workers:not-yet",
            "AIORCH_METRICS_TOKEN": "",
            "AIORCH_GATEWAY_PORT": str(self.gateway_port),
            "AIORCH_METRICS_PORT": str(self.metrics_port),
        }
        self._write()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}/api"

    def _write(self) -> None:
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in self.settings.items()))

    def set(self, **values: str) -> None:
        self.settings.update(values)
        self._write()

    def compose(self, *arguments: str, timeout: float = 600) -> str:
        done = subprocess.run(
            [
                "docker-compose",
                "--project-name",
                self.project,
                "--file",
                str(COMPOSE_FILE),
                "--env-file",
                str(self.env_file),
                *arguments,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, f"docker-compose {arguments}: {done.stderr[-3000:]}"
        return done.stdout

    def up(self, client: docker.DockerClient, *services: str) -> None:
        """Start ``services``; the guardian removes their containers if this process dies."""
        self.compose("up", "-d", *services)
        for container in client.containers.list(all=True, filters=self._label()):
            if container.id is not None:
                Guardian.of_process().watch_container(container.id, "/var/run/docker.sock")

    def _label(self) -> dict[str, str | list[str] | bool]:
        return {"label": f"com.docker.compose.project={self.project}"}

    def token(self, role: str, name: str) -> str:
        output = self.compose(
            "run", "--rm", "--no-deps", "gateway",
            "aiorch", "auth", "token", "create", "--role", role, "--expires", "1d", "--name", name,
        )  # fmt: skip
        return output.strip().splitlines()[-1]

    def wait_healthy(self, deadline_seconds: float = 180) -> None:
        deadline = time.monotonic() + deadline_seconds
        while True:
            try:
                if httpx.get(f"{self.api_url}/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(self.compose("logs", "--tail", "50"))
            time.sleep(1)

    def published(self, client: docker.DockerClient) -> dict[str, list[str]]:
        """Host addresses each service's container publishes, by service."""
        found: dict[str, list[str]] = {}
        for container in client.containers.list(filters=self._label()):
            service = container.labels["com.docker.compose.service"]
            for bindings in (container.ports or {}).values():
                for binding in bindings or []:
                    found.setdefault(service, []).append(
                        f"{binding['HostIp']}:{binding['HostPort']}"
                    )
        return found

    def leftovers(self, client: docker.DockerClient) -> list[str]:
        label = self._label()
        return [
            *(f"container {c.name}" for c in client.containers.list(all=True, filters=label)),
            *(f"volume {v.name}" for v in client.volumes.list(filters=label)),
            *(f"network {n.name}" for n in client.networks.list(filters=label)),
        ]


@pytest.fixture(scope="module")
def service_images() -> Iterator[None]:
    """PostgreSQL and RabbitMQ images from Debian's packages, removed afterwards."""
    require_service("docker-compose", shutil.which("docker-compose") is not None,
                    "apt-get install docker-compose")  # fmt: skip
    require_service(
        "debootstrap",
        shutil.which("debootstrap") is not None and os.geteuid() == 0,
        "building the PostgreSQL and RabbitMQ images needs root and debootstrap",
    )
    require_service(
        "the model extra", model_extra_installed(), "the stack's model service needs it"
    )
    client = docker.from_env(timeout=600)
    built = [
        build_postgres_image(client, TEST_POSTGRES_IMAGE),
        build_rabbitmq_image(client, TEST_RABBITMQ_IMAGE),
    ]
    try:
        yield
    finally:
        for image_id in built:
            client.images.remove(image_id, force=True)


def _run_to_completion(
    deployment_id: object,
    parameters: dict[str, object] | None = None,
    deadline_seconds: float = 300,
) -> str:
    """The run's final state name; with the run's logs when it is not Completed."""
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(
            deployment_id,  # type: ignore[arg-type]
            parameters=parameters,
        )
        deadline = time.monotonic() + deadline_seconds
        while True:
            state = client.read_flow_run(run.id).state
            if state is not None and state.is_final():
                break
            if time.monotonic() > deadline:
                break
            time.sleep(1)
    name = str(state.name) if state is not None else "unknown"
    if name == "Completed":
        return name
    return f"{name}: {flow_run_log_text(run.id, 'Finished in state', 10)[-4000:]}"


def _deploy(prefect: SyncPrefectClient, flow_name: str, entrypoint: str) -> UUID:
    return prefect.create_deployment(
        flow_id=prefect.create_flow_from_name(flow_name),
        name="compose",
        work_pool_name="aiorch-process",
        entrypoint=entrypoint,
    )


def _sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


def test_the_stack_runs_deployments_recovers_from_a_restart_and_leaves_nothing(
    scratch_dir: Path, test_flow_image: str, service_images: None
) -> None:
    client = docker.from_env()
    stack = Stack(scratch_dir, test_flow_image)
    try:
        stack.up(client, "postgres", "prefect-server", "gateway")
        stack.wait_healthy()
        admin = stack.token("admin", "test-admin")
        stack.set(
            AIORCH_WORKER_AUTH_STRING=f"workers:{stack.token('operator', 'workers')}",
            AIORCH_METRICS_TOKEN=stack.token("viewer", "metrics"),
        )
        stack.up(client)  # everything else: workers, model, RabbitMQ, exporter
        with temporary_settings(
            updates={PREFECT_API_URL: stack.api_url, PREFECT_API_AUTH_STRING: f"admin:{admin}"}
        ):
            with get_client(sync_client=True) as prefect:
                prefect.create_work_pool(WorkPoolCreate(name="aiorch-process", type="process"))
                states = _deploy(
                    prefect, "aiorch-breaker-states", "aiorch.flows.breaker_states.breaker_states"
                )
                team = _deploy(prefect, "aiorch-agent-team", "aiorch.flows.agent_team.agent_team")
            assert _run_to_completion(states) == "Completed"
            # Agents on the stack's model server, messages through the stack's RabbitMQ.
            assert _run_to_completion(team, {"agent_model": "local", "writers": 1}) == "Completed"

            # A service restarts (an upgrade, a crash): the stack comes back by itself.
            stack.compose("restart", "prefect-server")
            stack.wait_healthy()
            assert _run_to_completion(states) == "Completed"

        def model_counted(text: str) -> bool:
            requests = _sample(
                text, "aiorch_model_requests_total", model=LOCAL_MODEL, replayed="false"
            )
            return (requests or 0) >= 2  # a writer and the reviewer

        metrics = _poll_metrics(stack, model_counted)
        assert _sample(metrics, "aiorch_prefect_api_up") == 1.0
        assert model_counted(metrics), metrics
        # RabbitMQ's own exporter (inside the stack's network) saw the team's messages.
        broker = stack.compose(
            "exec", "-T", "metrics", "python", "-c",
            "import urllib.request; print(urllib.request.urlopen("
            "'http://rabbitmq:15692/metrics').read().decode())",
        )  # fmt: skip
        routed = [
            sample.value
            for family in text_string_to_metric_families(broker)
            for sample in family.samples
            if sample.name == "rabbitmq_global_messages_routed_total"  # per protocol
        ]
        assert sum(routed) >= 4, [line for line in broker.splitlines() if "global" in line]
        running = stack.compose("ps", "--services", "--filter", "status=running").split()
        assert sorted(running) == SERVICES
        # Nothing but the gateway and the exporter listens on the host, and on loopback.
        assert stack.published(client) == {
            "gateway": [f"127.0.0.1:{stack.gateway_port}"],
            "metrics": [f"127.0.0.1:{stack.metrics_port}"],
        }
    finally:
        stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "20")
    assert stack.leftovers(client) == []


def _poll_metrics(stack: Stack, ready: Callable[[str], bool], deadline_seconds: float = 60) -> str:
    # Usage events reach the server in the background after the run ends.
    deadline = time.monotonic() + deadline_seconds
    while True:
        text = httpx.get(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=30).text
        if ready(text) or time.monotonic() > deadline:
            return text
        time.sleep(1)
