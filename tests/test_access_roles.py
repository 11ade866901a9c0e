"""Access roles for container steps: secrets and network only as the role grants them.

(Agent roles and their tool refusals are tested with the MCP tools in test_agent_tools.)
"""

from __future__ import annotations

import re
from pathlib import Path
from uuid import uuid4

import docker
import pytest
from prefect import flow
from prefect.blocks.system import Secret
from pydantic import ValidationError

from aiorch.core.access import AccessRole
from aiorch.core.errors import ConfigurationError, PermissionDenied
from aiorch.tasks.container import (
    CacheVolume,
    ContainerStep,
    SecretRef,
    StepInput,
    StepResult,
    run_step,
)
from aiorch.tasks.container.cache_key import step_cache_key
from aiorch.tasks.container.spec import RunnerKind
from tests.services import TEST_BUSYBOX_IMAGE


def _run(step: ContainerStep, runner: str) -> StepResult:
    @flow(name="access-role-step")
    def one_step() -> StepResult:
        result: StepResult = run_step(step, runner, cache=False)
        return result

    return one_step()


@pytest.mark.logs_errors("PermissionDenied")
def test_a_step_asking_for_a_secret_its_role_lacks_fails_before_it_starts(
    prefect_api: str, scratch_dir: Path
) -> None:
    Secret(value="granted-value-1").save("role-granted", overwrite=True)
    Secret(value="withheld-value-2").save("role-withheld", overwrite=True)
    marker = scratch_dir / "ran"
    role = AccessRole(name="reporter", secrets=["role-granted"], network=True)
    step = ContainerStep(
        name="needs-two-secrets",
        image="busybox",
        commands=[["sh", "-c", f"echo ran > {marker}"]],
        secrets={"A": SecretRef(block="role-granted"), "B": SecretRef(block="role-withheld")},
        role=role,
    )
    with pytest.raises(PermissionDenied) as refused:
        _run(step, "local")
    assert str(refused.value) == (
        "step 'needs-two-secrets': secrets['B'] uses the secret 'role-withheld', which the "
        "role 'reporter' does not grant; add it to the role's secrets, or leave it out of "
        "the step"
    )
    assert not marker.exists()
    allowed = step.model_copy(update={"secrets": {"A": SecretRef(block="role-granted")}})
    assert _run(allowed, "local").exit_code == 0
    assert marker.read_text() == "ran\n"


@pytest.mark.logs_errors("ConfigurationError")
def test_a_role_without_network_refuses_runners_that_cannot_cut_it_off(prefect_api: str) -> None:
    step = ContainerStep(
        name="offline", image="busybox", commands=[["true"]], role=AccessRole(name="offline")
    )
    with pytest.raises(ConfigurationError, match="only the docker runner enforces"):
        _run(step, "local")


def test_a_docker_step_without_network_sees_only_loopback(
    prefect_api: str, busybox_image: str
) -> None:
    listing = [["ls", "/sys/class/net"]]
    offline = ContainerStep(
        name="offline-interfaces",
        image=TEST_BUSYBOX_IMAGE,
        commands=listing,
        role=AccessRole(name="offline"),
    )
    online = offline.model_copy(
        update={"name": "online-interfaces", "role": AccessRole(name="online", network=True)}
    )
    assert _run(offline, "docker").stdout_tail.split() == ["lo"]
    assert "eth0" in _run(online, "docker").stdout_tail.split()


def test_a_role_enters_the_cache_key_only_when_there_is_one() -> None:
    plain = ContainerStep(name="k", image="busybox", commands=[["true"]])
    with_role = plain.model_copy(update={"role": AccessRole(name="r", network=True)})
    other_role = plain.model_copy(update={"role": AccessRole(name="r", network=False)})
    keys = {
        step_cache_key(step, RunnerKind.LOCAL, None, {}) for step in (plain, with_role, other_role)
    }
    assert len(keys) == 3
    spec = plain.model_dump(mode="json")
    assert spec["role"] is None


def _anonymous_volumes(client: docker.DockerClient) -> set[str]:
    return {
        volume.name
        for volume in client.volumes.list()
        if volume.name and re.fullmatch(r"[0-9a-f]{64}", volume.name)
    }


def _volume_file(client: docker.DockerClient, volume: str, name: str) -> str:
    output: bytes = client.containers.run(
        TEST_BUSYBOX_IMAGE, ["cat", f"/v/{name}"], volumes={volume: {"bind": "/v"}}, remove=True
    )
    return output.decode()


def test_a_docker_step_runs_as_a_non_root_user_on_a_read_only_root(
    prefect_api: str, busybox_image: str, docker_client: docker.DockerClient, scratch_dir: Path
) -> None:
    source = scratch_dir / "in.txt"
    source.write_text("input line\n")
    volumes_before = _anonymous_volumes(docker_client)
    cache = f"hardened-{uuid4().hex[:8]}"
    step = ContainerStep(
        name="hardened",
        image=TEST_BUSYBOX_IMAGE,
        commands=[
            ["sh", "-c", "mkdir out && id -u > out/ids && id -g >> out/ids"],
            [
                "sh",
                "-c",
                "cat data/in.txt > out/copy && echo t > /tmp/t && cat /tmp/t >> out/copy && "
                "echo kept > cache/kept && "
                "if touch /etc/written 2>/dev/null; then echo writable; else echo read-only; fi "
                "> out/root",
            ],
        ],
        inputs=[StepInput(source=source, target="data/in.txt")],
        outputs=["out"],
        user="65534:65534",
        read_only_root=True,
        cache_volumes=[CacheVolume(name=cache, path="cache")],
    )

    @flow(name="hardened-step")
    def hardened() -> StepResult:
        result: StepResult = run_step(step, "docker", cache=False, export_to=scratch_dir / "x")
        return result

    try:
        result = hardened()
        # A cache volume stays writable under the read-only root.
        assert _volume_file(docker_client, f"aiorch-cache-{cache}", "kept") == "kept\n"
    finally:
        docker_client.volumes.get(f"aiorch-cache-{cache}").remove(force=True)
    assert result.exit_code == 0
    exported = scratch_dir / "x" / "out"
    # The second command saw the first one's files: the workdir volume carried over.
    assert (exported / "ids").read_text().split() == ["65534", "65534"]
    assert (exported / "copy").read_text() == "input line\nt\n"
    assert (exported / "root").read_text() == "read-only\n"
    assert _anonymous_volumes(docker_client) == volumes_before  # the workdir volume is gone


@pytest.mark.logs_errors("ConfigurationError")
@pytest.mark.parametrize("field", ["user", "read_only_root"])
def test_isolation_only_docker_enforces_is_refused_elsewhere(prefect_api: str, field: str) -> None:
    value: object = "1000:1000" if field == "user" else True
    step = ContainerStep(name="isolated", image="busybox", commands=[["true"]], **{field: value})
    with pytest.raises(
        ConfigurationError,
        match=rf"step 'isolated': {field} is enforced only by the docker runner \(local cannot\)",
    ):
        _run(step, "local")


def test_a_user_must_be_numeric() -> None:
    with pytest.raises(ValidationError, match=r"user 'nobody' must be numeric 'UID:GID'"):
        ContainerStep(name="x", image="busybox", commands=[["true"]], user="nobody")


def test_isolation_enters_the_cache_key_only_when_set() -> None:
    plain = ContainerStep(name="k", image="busybox", commands=[["true"]])
    variants = [
        plain,
        plain.model_copy(update={"user": "1000:1000"}),
        plain.model_copy(update={"read_only_root": True}),
    ]
    keys = {step_cache_key(step, RunnerKind.DOCKER, None, {}) for step in variants}
    assert len(keys) == 3
    unset = step_cache_key(plain, RunnerKind.DOCKER, None, {})
    explicit = plain.model_copy(update={"user": None, "read_only_root": False})
    assert step_cache_key(explicit, RunnerKind.DOCKER, None, {}) == unset
