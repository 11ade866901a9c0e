"""A Prefect cache policy for keys computed before the task is called.

aiorch's tasks compute their content keys in the calling task (where the runner, the
image identity or the flow run are known) and pass the key as the ``cache_key``
parameter of the inner task that does the work; this policy hands it to Prefect.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.transactions import AsyncTransaction, CommitMode, atransaction


@dataclass
class PrecomputedKey(CachePolicy):
    """Uses the ``cache_key`` parameter as the key; None (or absent) means no caching."""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """Return the caller's key unchanged."""
        key = inputs.get("cache_key")
        return key if isinstance(key, str) else None


def stored_as_it_ends() -> AbstractAsyncContextManager[AsyncTransaction]:
    """A transaction around an inner task call, so its record is written as it ends.

    Nested in the calling task's transaction (or a user's), an inner task's record is
    written only when that one commits, and dropped if it rolls back: a process killed
    after a step, model request or tool call finished, or a later failure in the same
    call, would lose it, and the rerun would do it again.
    """
    return atransaction(commit_mode=CommitMode.EAGER)
