"""A step's cache key changes with everything that changes its result, and only that.

A content-keyed cache that serves a stale result silently is the worst failure this
project can have: each field that changes what a step produces is a miss, each thing
that must not matter is a hit.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from aiorch.core.errors import ConfigurationError
from aiorch.tasks.container import CacheVolume, ContainerStep, RunnerKind, SecretRef, StepInput
from aiorch.tasks.container.cache_key import step_cache_key

SECRET = "sk-key-canary-31c9"


@pytest.fixture
def inputs(scratch_dir: Path) -> Path:
    source = scratch_dir / "in"
    source.mkdir()
    (source / "a.txt").write_text("alpha\n")
    (source / "b.txt").write_text("beta\n")
    return source


def _step(source: Path, **changes: Any) -> ContainerStep:
    fields: dict[str, Any] = {
        "name": "keyed",
        "image": "busybox:1.36",
        "commands": [["sh", "-c", "cat data/* > out/all"]],
        "setup": [["true"]],
        "env": {"MODE": "fast"},
        "secrets": {"TOKEN": SecretStr(SECRET), "DB": SecretRef(block="db-password")},
        "workdir": "/work",
        "inputs": [StepInput(source=source, target="data")],
        "cache_volumes": [CacheVolume(name="pip", path="/cache/pip")],
        "outputs": ["out"],
        "timeout_seconds": 60,
        **changes,
    }
    return ContainerStep(**fields)


VALUES = {"TOKEN": SECRET, "DB": "db-pass-1"}


def _key(step: ContainerStep, **overrides: Any) -> str:
    arguments: dict[str, Any] = {
        "runner": RunnerKind.DOCKER,
        "image_identity": "sha256:" + "1" * 64,
        "secret_values": VALUES,
        **overrides,
    }
    return step_cache_key(step, **arguments)


@pytest.mark.parametrize(
    "change",
    [
        {"commands": [["sh", "-c", "cat data/* > out/everything"]]},
        {"setup": [["apk", "add", "jq"]]},
        {"env": {"MODE": "slow"}},
        {"env": {"MODE": "fast", "EXTRA": "1"}},
        {"workdir": "/src"},
        {"outputs": ["out", "report.txt"]},
        {"image": "busybox:1.37"},
        {"secrets": {"TOKEN": SecretStr(SECRET), "DB": SecretRef(block="other-password")}},
        {"cache_volumes": [CacheVolume(name="pip", path="/root/.cache/pip")]},
        {"inputs": []},
    ],
    ids=lambda change: ",".join(change),
)
def test_each_field_that_changes_the_result_is_a_miss(inputs: Path, change: dict[str, Any]) -> None:
    assert _key(_step(inputs, **change)) != _key(_step(inputs))


def test_the_image_identity_the_runner_and_the_inputs_content_are_misses(inputs: Path) -> None:
    step = _step(inputs)
    base = _key(step)
    assert _key(step, image_identity="sha256:" + "2" * 64) != base  # a moved tag
    assert _key(step, runner=RunnerKind.DAGGER) != base
    (inputs / "b.txt").write_text("beta, changed\n")
    assert _key(_step(inputs)) != base
    (inputs / "b.txt").write_text("beta\n")
    (inputs / "b.txt").chmod(0o755)  # the mode is content too
    assert _key(_step(inputs)) != base


def test_a_changed_secret_value_is_a_miss_and_no_key_shows_a_value(inputs: Path) -> None:
    step = _step(inputs)
    base = _key(step)
    assert _key(step, secret_values={**VALUES, "TOKEN": SECRET + "-rotated"}) != base
    assert _key(step, secret_values={**VALUES, "DB": "db-pass-2"}) != base
    assert SECRET not in base
    assert "db-pass-1" not in base
    with pytest.raises(ConfigurationError, match=r"secrets \['DB'\]: their values are needed"):
        _key(step, secret_values={"TOKEN": SECRET})


def test_what_must_not_matter_is_a_hit(inputs: Path, scratch_dir: Path) -> None:
    base = _key(_step(inputs))
    assert _key(_step(inputs, timeout_seconds=600)) == base
    # The same files elsewhere (another checkout), with other modification times.
    elsewhere = scratch_dir / "elsewhere"
    shutil.copytree(inputs, elsewhere)
    for path in elsewhere.iterdir():
        os.utime(path, (1_000_000, 1_000_000))
    assert _key(_step(elsewhere)) == base
    # The same mapping given in another order.
    reordered = _step(
        inputs,
        env={"MODE": "fast"},
        secrets={"DB": SecretRef(block="db-password"), "TOKEN": SecretStr(SECRET)},
    )
    assert _key(reordered) == base


def test_fingerprints_are_keyed_by_the_machine_or_by_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aiorch.core.fingerprints import KEY_FILE, secret_fingerprint
    from aiorch.core.settings import load_settings

    machine = secret_fingerprint(SECRET)
    assert secret_fingerprint(SECRET) == machine
    key_file = load_settings().resolved_data_dir() / KEY_FILE
    assert key_file.stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("AIORCH_FINGERPRINT_KEY", "shared-by-every-worker")
    shared = secret_fingerprint(SECRET)
    assert shared != machine  # another key, another fingerprint: nothing to guess from
    assert secret_fingerprint(SECRET) == shared
