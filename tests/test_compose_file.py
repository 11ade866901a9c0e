"""The compose stack's file, checked offline against the Compose specification."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

COMPOSE = Path(__file__).parents[1] / "deployments" / "compose" / "docker-compose.yml"


def test_the_compose_file_follows_the_compose_specification() -> None:
    checker = Path(sys.executable).with_name("check-jsonschema")
    checked = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_only_the_gateway_and_the_exporter_listen_and_only_on_loopback() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    published = {name: service["ports"] for name, service in services.items() if "ports" in service}
    assert set(published) == {"gateway", "metrics"}
    for ports in published.values():
        assert all(port.startswith("127.0.0.1:") for port in ports)
    # The server demands the upstream auth string; every secret comes from .env.
    server = services["prefect-server"]["environment"]
    assert server["PREFECT_SERVER_API_AUTH_STRING"].startswith("${AIORCH_UPSTREAM_AUTH_STRING:?")


def test_aiorch_services_run_unprivileged_on_a_read_only_root() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name in ("prefect-server", "gateway", "process-worker", "model", "metrics"):
        service = services[name]
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "user" not in service, name  # the image's non-root user
    assert services["docker-worker"]["user"] == "root"  # the engine's socket; documented
