"""Run a task's coroutine from its sync twin, reusing one Prefect client.

A sync task that awaits async tasks (each model request, each step execution) goes
through Prefect's run-sync event loop, where no client context exists, so every call
would open a new async Prefect client: about 17 ms here, mostly loading the TLS trust
store, three times the rest of a passthrough agent call. The bridge keeps one client per
event loop and API URL and puts it in the context of each call, as an async flow's own
client context does.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any
from weakref import WeakKeyDictionary

from prefect.client.orchestration import PrefectClient
from prefect.context import AsyncClientContext
from prefect.settings import get_current_settings
from prefect.utilities.asyncutils import run_coro_as_sync

_clients: WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, AsyncClientContext]] = (
    WeakKeyDictionary()
)
_lock = threading.Lock()


async def _client_context() -> AsyncClientContext:
    loop = asyncio.get_running_loop()
    api_url = str(get_current_settings().api.url or "ephemeral")
    with _lock:
        by_url = _clients.setdefault(loop, {})
        context = by_url.get(api_url)
    if context is None:
        context = AsyncClientContext()
        client: PrefectClient = context.client
        await client.__aenter__()
        with _lock:
            by_url[api_url] = context
    return context


async def _with_shared_client[T](coroutine: Coroutine[Any, Any, T]) -> T:
    if AsyncClientContext.get() is not None:
        return await coroutine
    context = await _client_context()
    token = AsyncClientContext.__var__.set(context)
    try:
        return await coroutine
    finally:
        AsyncClientContext.__var__.reset(token)


def run_sync[T](coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion from sync code, with a reused Prefect client."""
    result: T = run_coro_as_sync(_with_shared_client(coroutine))
    return result
