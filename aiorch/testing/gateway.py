"""A real gateway (``aiorch gateway``) in front of a real Prefect server, for tests.

Example:
    ```python
    from pathlib import Path
    from tempfile import mkdtemp

    from aiorch.testing.gateway import guarded_server

    with guarded_server(Path(mkdtemp())) as guarded:
        print(guarded.url)  # http://127.0.0.1:PORT, the API under /api
    ```
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aiorch.core.services import free_port, running_service
from aiorch.testing.prefect_server import running_server

STARTUP_DEADLINE_SECONDS = 60.0


@dataclass(frozen=True)
class GuardedServer:
    """A Prefect server that accepts only its gateway, and the gateway in front of it."""

    url: str
    upstream_api_url: str
    upstream_auth_string: str
    store_url: str
    log: Path
    upstream_home: Path

    @property
    def api_url(self) -> str:
        """The API as clients reach it: through the gateway."""
        return f"{self.url}/api"


@contextmanager
def running_gateway(
    home: Path,
    upstream_url: str,
    upstream_auth_string: str,
    store_url: str,
    env: dict[str, str] | None = None,
) -> Iterator[tuple[str, Path]]:
    """Run ``aiorch gateway`` in front of ``upstream_url``; yield its URL and log file."""
    port = free_port()
    log = home / f"gateway-{port}.log"
    gateway_env = {
        **os.environ,
        "AIORCH_GATEWAY_UPSTREAM_AUTH_STRING": upstream_auth_string,
        "AIORCH_GATEWAY_STORE_URL": store_url,
        **(env or {}),
    }
    argv = [
        str(Path(sys.executable).with_name("aiorch")),
        "gateway",
        "--upstream",
        upstream_url,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    url = f"http://127.0.0.1:{port}"
    with running_service(argv, gateway_env, log, f"{url}/api/health", STARTUP_DEADLINE_SECONDS):
        yield url, log


@contextmanager
def guarded_server(home: Path, env: dict[str, str] | None = None) -> Iterator[GuardedServer]:
    """A Prefect server with its own auth string, reachable with tokens through a gateway."""
    home.mkdir(parents=True, exist_ok=True)
    auth_string = f"aiorch-gateway:{secrets.token_urlsafe(24)}"
    store_url = f"sqlite:///{home / 'gateway.sqlite'}"
    upstream_home = home / "prefect"
    with running_server(
        upstream_home, free_port(), env={"PREFECT_SERVER_API_AUTH_STRING": auth_string}
    ) as upstream_api:
        upstream = upstream_api.removesuffix("/api")
        with running_gateway(home, upstream, auth_string, store_url, env) as (url, log):
            yield GuardedServer(url, upstream_api, auth_string, store_url, log, upstream_home)
