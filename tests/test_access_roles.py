"""Access roles for container steps: secrets and network only as the role grants them.

(Agent roles and their tool refusals are tested with the MCP tools in test_agent_tools.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect import flow
from prefect.blocks.system import Secret

from aiorch.core.access import AccessRole
from aiorch.core.errors import ConfigurationError, PermissionDenied
from aiorch.tasks.container import ContainerStep, SecretRef, StepResult, run_step
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
