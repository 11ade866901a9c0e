"""Run a shared service until it is stopped or idle: the loop both supervisors share.

The local Prefect server (:mod:`aiorch.core.local_server_process`) and the local model
server (``aiorch.tasks.agents.local_model_process``) outlive the command that started
them on purpose. Each runs under a supervisor that starts the service in a process group
of its own, hands it to the supervisor's guardian (a ``kill -9`` of the supervisor
stops the service too), and stops it on SIGTERM, SIGINT, or when the caller's idle test
says so.

Example:
    ```python
    from aiorch.core.supervisor import supervise

    print(supervise.__name__)  # supervise
    ```
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from types import FrameType

from aiorch.core.guardian import Guardian
from aiorch.core.services import stop_process_group


def supervise(
    command: list[str],
    idle: Callable[[], bool],
    check_seconds: float,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run ``command`` until a signal, its own exit, or ``idle()`` is true at a check."""
    service = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    Guardian.of_process().watch(service.pid)
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    next_check = time.monotonic() + check_seconds
    while not stopping and service.poll() is None:
        time.sleep(min(1.0, check_seconds))
        if time.monotonic() < next_check:
            continue
        next_check = time.monotonic() + check_seconds
        if idle():
            print(f"aiorch: {command[0]} is idle; stopping", flush=True)
            break
    stop_process_group(service)
