"""The touches of Prefect internals were checked against these Prefect releases only.

When this fails after a Prefect upgrade, re-check each touch listed in
aiorch/core/prefect_internals.py (the client context variable, storage blocks' async
methods, the file lock manager's private methods), then widen CHECKED_PREFECT.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet
from prefect.blocks.system import Secret
from prefect.context import AsyncClientContext
from prefect.events.worker import EventsWorker
from prefect.locking.filesystem import FileSystemLockManager

from aiorch.core.errors import ConfigurationError
from aiorch.core.prefect_internals import CHECKED_PREFECT, block_document_id
from tests.sources import package_modules


def test_installed_prefect_is_one_the_internals_were_checked_against() -> None:
    installed = metadata.version("prefect")
    assert installed in SpecifierSet(CHECKED_PREFECT), (
        f"Prefect {installed} is outside {CHECKED_PREFECT}: re-check prefect_internals.py"
    )


def test_the_private_parts_relied_on_still_exist() -> None:
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.transactions import Transaction

    assert hasattr(AsyncClientContext, "__var__")
    assert hasattr(Transaction, "__var__")
    assert isinstance(SubprocessASGIServer._instances, dict)
    assert callable(getattr(EventsWorker, "wait_until_empty", None))
    for method in ("_lock_path_for_key", "_ensure_lock_files_directory_exists"):
        assert callable(getattr(FileSystemLockManager, method, None)), method


def test_no_other_module_reaches_into_prefect_internals() -> None:
    touches = (
        "prefect._internal",
        "__var__",
        "prefect.locking",
        "prefect.utilities.asyncutils",
        "_block_document_id",
    )
    found = [
        f"{module}: {touch}"
        for module, path in package_modules().items()
        if module != "aiorch.core.prefect_internals"
        for touch in touches
        if touch in path.read_text()
    ]
    assert not found


def test_an_unsaved_block_has_no_document_id_and_says_so() -> None:
    with pytest.raises(ConfigurationError, match="Secret: the block has no saved document"):
        block_document_id(Secret(value="never-saved"))


def test_a_final_state_hook_reads_every_task_run_of_its_flow_run(prefect_api: str) -> None:
    from prefect import flow, task

    from aiorch.tasks.monitoring.runs import read_settled_run

    seen: list[str] = []

    @task
    def leaf(value: int) -> int:
        return value

    @task
    def branch(value: int) -> int:
        return leaf(value) + 1

    async def read_in_hook(flow: object, flow_run: Any, state: object) -> None:
        run = await read_settled_run(flow_run.id)
        seen.extend(sorted(task.state for task in run.tasks))

    @flow(name="aiorch-test-hook-reads-its-tasks", on_completion=[read_in_hook])
    def many_tasks() -> int:
        total = sum(leaf(value) for value in range(20))
        return total + sum(leaf.map(list(range(20))).result()) + branch(5)

    assert many_tasks() == 190 + 190 + 6
    assert seen == ["Completed"] * 42  # 20 calls, 20 mapped, a branch and its nested leaf
