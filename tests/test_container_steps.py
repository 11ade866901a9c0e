"""Container steps on every runner available here: the same scenarios, the same results.

The local runner always runs; the docker runner needs a Docker engine (CI starts one)
and runs a busybox image built locally; the dagger runner runs the real dagger-io SDK
against the ``dagger session`` double (tests/doubles/dagger_cli.py), which runs commands
as host processes; tests/test_dagger_real_engine.py runs against a real engine.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import docker
import pytest
from prefect import flow, task
from prefect.blocks.system import Secret
from prefect.results import get_result_store
from prefect_docker import DockerHost
from pydantic import SecretStr, ValidationError

from aiorch.core.services import free_port
from aiorch.tasks.container import (
    CacheVolume,
    ContainerStep,
    RunnerKind,
    SecretRef,
    StepError,
    StepFailed,
    StepInput,
    StepResult,
    StepTimedOut,
    arun_step,
    run_step,
)
from aiorch.tasks.container.cache_key import step_cache_key
from aiorch.tasks.container.errors import (
    EngineUnavailable,
    ExportConflict,
    ImageUnavailable,
    MissingOutput,
    UnsafeOutput,
)
from aiorch.tasks.container.files import EXPORT_MANIFEST, pack_outputs, restore_outputs
from aiorch.tasks.container.logs import StepOutput
from aiorch.tasks.container.runners.docker import RUN_LABEL, DockerRunner
from aiorch.tasks.container.select import choose_runner
from aiorch.testing.prefect_server import flow_run_log_text
from tests.processes import wait_until_gone
from tests.services import TEST_BUSYBOX_IMAGE as BUSYBOX_IMAGE
from tests.socket_relay import SocketRelay

CANARY = "sk-step-canary-93a1f0"


@pytest.fixture(params=["local", "docker", "dagger"])
def runner(request: pytest.FixtureRequest) -> str:
    if request.param == "docker":
        request.getfixturevalue("busybox_image")
    if request.param == "dagger":
        request.getfixturevalue("dagger_double")
    return str(request.param)


@pytest.fixture
def data_dir(scratch_dir: Path) -> Path:
    source = scratch_dir / "data"
    (source / "nested").mkdir(parents=True)
    (source / "a.csv").write_text("x,1\ny,2\n")
    (source / "nested" / "b.csv").write_text("z,3\n")
    (source / "notes.tmp").write_text("scratch\n")
    return source


def _run(step: ContainerStep, runner: str, **options: Any) -> StepResult:
    @flow(name="container-step-test")
    def one_step() -> StepResult:
        result: StepResult = run_step(step, runner, **options)
        return result

    return one_step()


def _containers_left(client: docker.DockerClient) -> list[str]:
    return [str(c.name) for c in client.containers.list(all=True, filters={"label": RUN_LABEL})]


def test_captures_output_and_says_whether_the_image_was_used(prefect_api: str, runner: str) -> None:
    step = ContainerStep(
        name="hello",
        image=BUSYBOX_IMAGE,
        commands=[["sh", "-c", "echo out-line; echo err-line >&2; echo $GREETING"]],
        env={"GREETING": "hi there"},
    )
    result = _run(step, runner, cache=False)
    assert result.exit_code == 0
    assert result.stdout_tail.splitlines() == ["out-line", "hi there"]
    assert result.stderr_tail == "err-line"
    assert result.runner == RunnerKind(runner)
    assert result.image_used is (runner != "local")
    assert not result.cache_hit


def test_inputs_in_outputs_out_and_the_file_system_carries_over(
    prefect_api: str, runner: str, data_dir: Path, scratch_dir: Path
) -> None:
    step = ContainerStep(
        name="sum",
        image=BUSYBOX_IMAGE,
        commands=[
            ["sh", "-c", "mkdir -p out && find data -type f | sort > out/files.txt"],
            ["sh", "-c", "cat data/a.csv data/nested/b.csv | wc -l > out/lines.txt"],
        ],
        inputs=[StepInput(source=data_dir, target="data", exclude=("*.tmp",))],
        outputs=["out"],
    )
    export = scratch_dir / "export"
    result = _run(step, runner, cache=False, export_to=export)
    assert result.outputs == {"out": export / "out"}
    assert (export / "out" / "files.txt").read_text().split() == ["data/a.csv", "data/nested/b.csv"]
    assert (export / "out" / "lines.txt").read_text().strip() == "3"


@pytest.mark.logs_errors("StepFailed")
def test_failure_raises_with_exit_code_and_leaves_no_partial_output(
    prefect_api: str, runner: str, scratch_dir: Path
) -> None:
    step = ContainerStep(
        name="fails",
        image=BUSYBOX_IMAGE,
        commands=[["sh", "-c", "mkdir out; echo partial > out/x; echo broken >&2; exit 3"]],
        outputs=["out"],
    )
    export = scratch_dir / "export"
    with pytest.raises(StepFailed) as caught:
        _run(step, runner, cache=False, export_to=export)
    assert caught.value.exit_code == 3
    assert caught.value.stderr_tail == "broken"
    assert "exited with code 3: broken" in str(caught.value)
    assert not (export / "out").exists()


@pytest.mark.logs_errors("MissingOutput")
def test_missing_output_fails_the_step(prefect_api: str, runner: str) -> None:
    step = ContainerStep(name="no-out", image=BUSYBOX_IMAGE, commands=[["true"]], outputs=["out"])
    with pytest.raises(MissingOutput, match="output 'out' was not produced"):
        _run(step, runner, cache=False)


@pytest.mark.logs_errors("UnsafeOutput")
def test_an_output_that_cannot_be_restored_fails_the_step_and_is_not_cached(
    prefect_api: str, runner: str, scratch_dir: Path
) -> None:
    step = ContainerStep(
        name=f"abs-link-{runner}",
        image=BUSYBOX_IMAGE,
        commands=[["sh", "-c", "mkdir -p out && echo x > out/file && ln -s /etc/hostname out/l"]],
        outputs=["out"],
    )
    export = scratch_dir / "export"
    for _ in range(2):  # the second run runs again: nothing was stored the first time
        with pytest.raises(UnsafeOutput, match="output 'out/l' cannot be restored safely"):
            _run(step, runner, export_to=export)
    assert not export.exists()


@pytest.mark.logs_errors("StepFailed")
def test_unknown_command_is_exit_127(prefect_api: str, runner: str) -> None:
    step = ContainerStep(name="nocmd", image=BUSYBOX_IMAGE, commands=[["no-such-tool-xyz"]])
    with pytest.raises(StepFailed) as caught:
        _run(step, runner, cache=False)
    assert caught.value.exit_code in {127, 126}


@pytest.mark.logs_errors("StepTimedOut")
def test_timeout_stops_the_command(
    prefect_api: str, runner: str, request: pytest.FixtureRequest, scratch_dir: Path
) -> None:
    pid_file = scratch_dir / "pid"  # a host path: written by host processes only
    step = ContainerStep(
        name="hangs",
        image=BUSYBOX_IMAGE,
        commands=[["sh", "-c", f"echo $$ > {pid_file}; exec sleep 60"]],
        timeout_seconds=1.5,
    )
    with pytest.raises(StepTimedOut, match=r"timed out after 1\.5 s"):
        _run(step, runner, cache=False)
    if runner == "docker":  # the container was killed and removed
        assert _containers_left(request.getfixturevalue("docker_client")) == []
    else:  # the host process (the local command, the double's exec) was killed
        wait_until_gone({int(pid_file.read_text())}, deadline_seconds=5)


def test_secrets_are_masked_in_results_and_logs(prefect_api: str, runner: str) -> None:
    step = ContainerStep(
        name="secret",
        image=BUSYBOX_IMAGE,
        commands=[["sh", "-c", 'echo "token=$API_TOKEN"; echo "$API_TOKEN" >&2']],
        secrets={"API_TOKEN": SecretStr(CANARY)},
    )

    @flow(name="secret-step-test")
    def secret_flow() -> StepResult:
        return run_step(step, runner)

    state = secret_flow(return_state=True)
    result = state.result()
    assert result.stdout_tail == "token=********"
    assert result.stderr_tail == "********"
    assert CANARY not in repr(step)
    assert CANARY not in step.model_dump_json()
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    messages = flow_run_log_text(run_id, expect="token=********")
    assert "token=********" in messages
    assert CANARY not in messages


@pytest.mark.logs_errors("StepError")
def test_secret_blocks_are_loaded_when_the_step_runs(prefect_api: str) -> None:
    block_name = f"step-token-{free_port()}"
    Secret(value=CANARY).save(block_name)
    step = ContainerStep(
        name="block-secret",
        image=BUSYBOX_IMAGE,
        commands=[["sh", "-c", 'test "$TOKEN" = "' + CANARY + '" && echo "got $TOKEN"']],
        secrets={"TOKEN": SecretRef(block=block_name)},
    )
    assert _run(step, "local", cache=False).stdout_tail == "got ********"

    missing = step.model_copy(update={"secrets": {"TOKEN": SecretRef(block="no-such-block")}})
    with pytest.raises(
        StepError,
        match=r"Secret block 'no-such-block' does not exist.*block create secret no-such-block",
    ):
        _run(missing, "local", cache=False)


def test_cache_hit_restores_outputs_and_follows_content(
    prefect_api: str, runner: str, data_dir: Path, scratch_dir: Path
) -> None:
    step = ContainerStep(
        name=f"cached-{runner}-{free_port()}",
        image=BUSYBOX_IMAGE,
        commands=[
            [
                "sh",
                "-c",
                "mkdir -p out && cat data/a.csv > out/copy.csv"
                " && cat /proc/sys/kernel/random/uuid > out/stamp",
            ]
        ],
        inputs=[StepInput(source=data_dir, target="data", exclude=("*.tmp",))],
        outputs=["out"],
    )
    export = scratch_dir / "export"
    first = _run(step, runner, export_to=export)
    stamp = (export / "out" / "stamp").read_text()
    assert not first.cache_hit

    (export / "out").rename(scratch_dir / "moved")
    os.utime(data_dir / "a.csv", (1, 1))  # a new mtime alone must not miss
    (data_dir / "notes.tmp").write_text("excluded, so it must not miss either\n")
    second = _run(step, runner, export_to=export)
    assert second.cache_hit
    assert (export / "out" / "stamp").read_text() == stamp
    assert (export / "out" / "copy.csv").read_text() == "x,1\ny,2\n"

    (data_dir / "a.csv").write_text("x,9\n")
    third = _run(step, runner, export_to=export)
    assert not third.cache_hit
    assert (export / "out" / "copy.csv").read_text() == "x,9\n"


def test_identical_concurrent_steps_run_once(prefect_api: str, scratch_dir: Path) -> None:
    ledger = scratch_dir / "ledger"
    step = ContainerStep(
        name=f"once-{free_port()}",
        image="not-used-by-local",
        commands=[["sh", "-c", f"echo ran >> {ledger}; sleep 1; echo done"]],
    )

    @flow(name="concurrent-steps-test")
    def twice() -> list[StepResult]:
        futures = [run_step.submit(step, "local") for _ in range(2)]
        return [future.result() for future in futures]

    results = twice()
    assert ledger.read_text() == "ran\n"
    assert sorted(result.cache_hit for result in results) == [False, True]


def test_identical_concurrent_async_steps_run_once(prefect_api: str, scratch_dir: Path) -> None:
    ledger = scratch_dir / "ledger"
    step = ContainerStep(
        name=f"once-async-{free_port()}",
        image="not-used-by-local",
        commands=[["sh", "-c", f"echo ran >> {ledger}; sleep 1"]],
    )

    @flow(name="concurrent-async-steps-test")
    async def twice() -> list[StepResult]:
        results: list[StepResult] = []

        async def one() -> None:
            results.append(await arun_step(step, "local"))

        async with anyio.create_task_group() as group:
            group.start_soon(one)
            group.start_soon(one)
        return results

    results = anyio.run(twice)
    assert ledger.read_text() == "ran\n"
    assert sorted(result.cache_hit for result in results) == [False, True]


def test_a_finished_step_is_stored_before_the_enclosing_task_ends(prefect_api: str) -> None:
    """A process killed after a step returned must still find the step in the cache.

    The execution's transaction would otherwise be a child of the caller's and be
    written only when the caller's task (or the user's ``transaction()``) commits.
    """
    step = ContainerStep(
        name=f"stored-{os.getpid()}-{time.monotonic_ns()}",
        image=BUSYBOX_IMAGE,
        commands=[["sh", "-c", "mkdir -p out && echo done > out/value"]],
        outputs=("out",),
    )
    key = step_cache_key(step, RunnerKind.LOCAL, None)

    @task(name="encloses-a-step")
    def enclosing() -> bool:
        run_step(step, "local")
        # Still inside this task's transaction: nothing enclosing has committed yet.
        return get_result_store().exists(key)

    @flow(name="stored-step-test")
    def one_step() -> bool:
        return enclosing()

    assert one_step(), "the finished step was not stored until its caller committed"


def test_cache_volumes_persist_between_runs(prefect_api: str, runner: str) -> None:
    volume = CacheVolume(name=f"vol-{runner}-{free_port()}", path="cache", env_var="MY_CACHE")
    step = ContainerStep(
        name="count",
        image=BUSYBOX_IMAGE,
        commands=[["sh", "-c", 'echo x >> "$MY_CACHE/hits"; wc -l < "$MY_CACHE/hits"']],
        cache_volumes=[volume],
    )
    assert _run(step, runner, cache=False).stdout_tail.strip() == "1"
    assert _run(step, runner, cache=False).stdout_tail.strip() == "2"
    if runner == "docker":
        docker.from_env().volumes.get(f"aiorch-cache-{volume.name}").remove(force=True)


def test_async_task_in_an_async_flow(prefect_api: str) -> None:
    step = ContainerStep(name="async", image="unused", commands=[["echo", "async ok"]])

    @flow(name="async-step-test")
    async def async_flow() -> StepResult:
        return await arun_step(step, "local", cache=False)

    assert anyio.run(async_flow).stdout_tail == "async ok"


def test_docker_removes_its_containers_when_cancelled(
    busybox_image: str, docker_client: docker.DockerClient
) -> None:
    step = ContainerStep(name="cancelled", image=busybox_image, commands=[["sleep", "60"]])
    output = StepOutput("cancelled", logging.getLogger("test"))

    async def cancel_midway() -> bool:
        with anyio.move_on_after(3) as scope:
            await DockerRunner(pull="never").run(step, {}, output)
        return scope.cancelled_caught

    assert anyio.run(cancel_midway)
    assert _containers_left(docker_client) == []


def test_docker_reconnects_after_the_engine_went_away(
    busybox_image: str, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    """The runner keeps a client per thread: a vanished engine must not leave it stuck."""
    step = ContainerStep(
        name="relayed", image=busybox_image, commands=[["touch", "made"], ["ls", "made"]]
    )
    output = StepOutput("relayed", logging.getLogger("test"))
    with SocketRelay(tmp_path / "docker.sock", "/var/run/docker.sock") as relay:
        runner = DockerRunner(DockerHost(base_url=f"unix://{relay.path}"), pull="never")

        async def scenario() -> tuple[int, type[BaseException] | None, int]:
            first = await runner.run(step, {}, output)
            relay.cut()
            try:
                await runner.run(step, {}, output)
                failure = None
            except Exception as error:
                failure = type(error)
            relay.restore()
            again = await runner.run(step, {}, output)
            return first.exit_code, failure, again.exit_code

        assert anyio.run(scenario) == (0, EngineUnavailable, 0)
    assert _containers_left(docker_client) == []
    assert docker_client.images.list(name="aiorch-tmp") == [], "intermediate images left"


def test_docker_without_the_image_says_how_to_fix_it(docker_client: docker.DockerClient) -> None:
    step = ContainerStep(name="noimage", image="aiorch-test/absent:1", commands=[["true"]])
    output = StepOutput("noimage", logging.getLogger("test"))
    with pytest.raises(ImageUnavailable, match="not on the engine and pulling is off"):
        anyio.run(DockerRunner(pull="never").run, step, {}, output)


def test_auto_prefers_docker_then_falls_back_to_local(
    docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAGGER_SESSION_PORT", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    kind, reason = choose_runner(RunnerKind.AUTO)
    assert kind is RunnerKind.DOCKER
    assert reason.startswith("auto: engine")
    assert "dagger" in reason
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{free_port()}")
    kind, reason = choose_runner(RunnerKind.AUTO)
    assert kind is RunnerKind.LOCAL
    assert "docker: engine not reachable" in reason


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "Bad Name"}, "name 'Bad Name' must be 1-63 lower-case"),
        ({"commands": []}, "commands must hold non-empty argv lists (commands at least one)"),
        ({"commands": [[]]}, "commands must hold non-empty argv lists"),
        ({"setup": [["apk"], []]}, "setup must hold non-empty argv lists"),
        ({"image": "has space"}, "image 'has space' must be a reference"),
        ({"workdir": "work"}, "workdir 'work' must be an absolute path"),
        ({"outputs": ["/etc"]}, "outputs must be a relative path inside the step's workdir"),
        ({"outputs": ["../up"]}, "outputs must be a relative path inside the step's workdir"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"secrets": {"TOKEN": CANARY}}, "wrap the value in SecretStr(...)"),
        ({"env": {"A": "1"}, "secrets": {"A": SecretStr("x")}}, "set in both env and secrets"),
        ({"env": {"1BAD": "x"}}, "environment variable name '1BAD' is not valid"),
        ({"unknown": 1}, "Extra inputs are not permitted"),
        ({"outputs": ["."]}, "name a path below workdir, e.g. 'out'"),
        ({"outputs": ["out", "out/a"]}, "outputs 'out/a' lies inside 'out'; list only 'out'"),
        ({"image": ":::@@@"}, "image ':::@@@' must be a reference such as 'busybox:1.36'"),
        ({"image": "Busybox"}, "must be a reference"),
        ({"commands": "echo hi"}, "commands must be a list of argv lists, not a string"),
        ({"commands": ["echo", "hi"]}, "commands[0] is a string; each command is an argv list"),
        ({"setup": [["a\0b"]]}, "setup[0] holds a NUL byte"),
        ({"env": {"A": "x\0y"}}, "env['A'] holds a NUL byte"),
        ({"secrets": {"TOKEN": 12345678}}, "secrets['TOKEN'] is of type int; give SecretStr"),
        ({"secrets": {"TOKEN": SecretStr(CANARY + "\0")}}, "secrets['TOKEN'] holds a NUL byte"),
    ],
)
def test_invalid_specs_name_the_field_and_the_fix(fields: dict[str, object], message: str) -> None:
    spec: dict[str, object] = {"name": "ok", "image": "busybox", "commands": [["true"]], **fields}
    with pytest.raises(ValidationError) as caught:
        ContainerStep.model_validate(spec)
    assert message in str(caught.value)
    assert CANARY not in str(caught.value)


def test_inputs_must_exist_and_stay_inside_the_workdir(scratch_dir: Path) -> None:
    with pytest.raises(ValidationError, match="does not exist; point it at a host path"):
        StepInput(source=scratch_dir / "absent", target="data")
    with pytest.raises(ValidationError, match="target must be a relative path"):
        StepInput(source=scratch_dir, target="/abs")


@pytest.mark.logs_errors("ConfigurationError")
def test_runner_name_is_checked(prefect_api: str) -> None:
    step = ContainerStep(name="x", image="busybox", commands=[["true"]])
    with pytest.raises(ValueError, match="runner: must be one of auto, dagger, docker, local"):
        _run(step, "podman")


def test_image_pinning_is_recognised() -> None:
    pinned = ContainerStep(name="p", image="busybox@sha256:" + "a" * 64, commands=[["true"]])
    assert pinned.image_pinned
    assert not ContainerStep(name="t", image="busybox:1.36", commands=[["true"]]).image_pinned


def test_setup_runs_once_per_image_and_is_reused(
    prefect_api: str, runner: str, request: pytest.FixtureRequest
) -> None:
    setup = (("sh", "-c", "mkdir -p .setup && cat /proc/sys/kernel/random/uuid > .setup/stamp"),)
    marker = f"prep-{runner}-{free_port()}"  # a fresh setup, never prepared before
    steps = [
        ContainerStep(
            name=f"setup-{index}",
            image=BUSYBOX_IMAGE,
            setup=setup,
            env={"MARKER": marker},
            commands=[["cat", ".setup/stamp"]],
        )
        for index in range(2)
    ]
    stamps = [_run(step, runner, cache=False).stdout_tail for step in steps]
    assert all(len(stamp) == 36 for stamp in stamps), stamps
    if runner == "local":
        assert stamps[0] != stamps[1]  # no image to keep the setup in
    else:
        assert stamps[0] == stamps[1]
    if runner == "docker":
        client = request.getfixturevalue("docker_client")
        prepared = client.images.list(filters={"label": "io.aiorch.prepared"})
        assert prepared
        for image in prepared:
            client.images.remove(image.id, force=True)


@pytest.mark.logs_errors("StepFailed")
def test_failing_setup_fails_the_step(prefect_api: str, runner: str) -> None:
    step = ContainerStep(
        name="bad-setup",
        image=BUSYBOX_IMAGE,
        setup=[["sh", "-c", f"echo no-{free_port()} >&2; exit 6"]],
        commands=[["true"]],
    )
    with pytest.raises(StepFailed) as caught:
        _run(step, runner, cache=False)
    assert caught.value.exit_code == 6


def _export_step(name: str) -> ContainerStep:
    return ContainerStep(
        name=name,
        image=BUSYBOX_IMAGE,
        commands=[["sh", "-c", "mkdir -p out && echo made > out/result"]],
        outputs=["out"],
    )


def _tree(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): path.read_text() if path.is_file() else "<dir>"
        for path in sorted(root.rglob("*"))
    }


@pytest.mark.logs_errors("ExportConflict")
def test_an_export_never_touches_what_aiorch_did_not_make(
    prefect_api: str, scratch_dir: Path
) -> None:
    step = _export_step(f"export-{os.getpid()}-{time.monotonic_ns()}")
    users = scratch_dir / "users"
    (users / "out").mkdir(parents=True)
    (users / "out" / "thesis.txt").write_text("mine")
    before = _tree(scratch_dir)
    with pytest.raises(ExportConflict, match="exists and aiorch did not export it there"):
        _run(step, "local", export_to=users)
    a_file = scratch_dir / "a-file"
    a_file.write_text("keep")
    before = _tree(scratch_dir)
    with pytest.raises(ExportConflict, match="is a file, not a directory"):
        _run(step, "local", export_to=a_file)
    with pytest.raises(ExportConflict, match="is a file, not a directory"):
        _run(step, "local", export_to=a_file / "below")
    assert _tree(scratch_dir) == before  # nothing moved, nothing left behind

    # Refused before running: the first run that can export is not a cache hit.
    mine = scratch_dir / "mine"
    first = _run(step, "local", export_to=mine)
    assert not first.cache_hit
    assert (mine / "out" / "result").read_text() == "made\n"
    again = _run(step, "local", export_to=mine)  # aiorch's own export is replaced
    assert again.cache_hit
    assert sorted(path.name for path in mine.iterdir()) == [EXPORT_MANIFEST, "out"]
    # Once the user puts their own directory there, it is theirs.
    (mine / "out").rename(scratch_dir / "moved")
    (mine / "out").mkdir()
    with pytest.raises(ExportConflict):
        _run(step, "local", export_to=mine)
    assert list((mine / "out").iterdir()) == []


def test_a_failed_export_puts_back_what_it_replaced(
    scratch_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = scratch_dir / "work"
    for name, text in [("one", "new one"), ("two", "new two")]:
        (work / name).mkdir(parents=True)
        (work / name / "f").write_text(text)
    export = scratch_dir / "export"
    restore_outputs(pack_outputs(work, ["one", "two"], "s"), ["one", "two"], export)
    (work / "one" / "f").write_text("newer one")
    archive = pack_outputs(work, ["one", "two"], "s")
    before = _tree(export)
    renames: list[Path] = []
    original = Path.rename

    def failing_rename(self: Path, target: Any) -> Path:
        renames.append(self)
        if len(renames) == 4:  # one: old aside, new in; two: old aside, then this fails
            raise OSError("injected: disk full")
        return original(self, target)

    monkeypatch.setattr(Path, "rename", failing_rename)
    with pytest.raises(OSError, match="injected"):
        restore_outputs(archive, ["one", "two"], export)
    monkeypatch.undo()
    assert _tree(export) == before


def test_exports_to_one_place_at_once_take_turns(scratch_dir: Path) -> None:
    work = scratch_dir / "work"
    (work / "out").mkdir(parents=True)
    (work / "out" / "f").write_text("same result")
    archive = pack_outputs(work, ["out"], "s")
    export = scratch_dir / "export"
    restore_outputs(archive, ["out"], export)
    failures: list[BaseException] = []

    def export_many() -> None:
        try:
            for _ in range(30):
                restore_outputs(archive, ["out"], export)
        except BaseException as error:  # collected: the main thread asserts on them
            failures.append(error)

    workers = [threading.Thread(target=export_many) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert failures == []  # none took another's fresh export for the user's
    assert (export / "out" / "f").read_text() == "same result"
    assert sorted(path.name for path in export.iterdir()) == [EXPORT_MANIFEST, "out"]
