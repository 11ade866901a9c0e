"""``aiorch gateway`` and ``aiorch auth token ...``: run the gateway, manage its tokens.

Examples:
    ```bash
    aiorch auth token create --role operator --expires 30d --name ci   # prints it once
    aiorch auth token list
    aiorch auth token rotate ci --grace 1h
    aiorch auth token revoke ci
    aiorch gateway --upstream http://127.0.0.1:4200 --port 4280
    ```
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from aiorch.gateway.roles import Role


def _when(moment: datetime | None) -> str:
    return "never" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


def _token(arguments: argparse.Namespace) -> int:
    from aiorch.gateway.tokens import IssuedToken, TokenStore, parse_duration

    store = TokenStore.default()

    def issued(token: IssuedToken, verb: str) -> int:
        record = token.record
        # The token alone on stdout, so `TOKEN=$(aiorch auth token create ...)` works.
        print(token.token.get_secret_value())
        print(
            f"{verb} token {record.id} ({record.name}, role {record.role}, expires "
            f"{_when(record.expires_at)}); it is shown this once: store it now",
            file=sys.stderr,
        )
        return 0

    if arguments.action == "create":
        expires = parse_duration(arguments.expires)
        name = arguments.name or f"{arguments.role}-{datetime.now(UTC):%Y%m%d%H%M%S}"
        return issued(store.create(name, Role(arguments.role), expires_in=expires), "created")
    if arguments.action == "rotate":
        grace = parse_duration(arguments.grace, "--grace") if arguments.grace else None
        return issued(store.rotate(arguments.token, grace=grace or timedelta(0)), "rotated to")
    if arguments.action == "revoke":
        for record in store.revoke(arguments.token):
            print(f"revoked token {record.id} ({record.name}, role {record.role})")
        return 0
    now = datetime.now(UTC)
    records = store.records()
    if not records:
        print("no tokens yet: `aiorch auth token create --role viewer --expires 30d`")
    for record in records:
        print(
            f"{record.id}  {record.state(now):<8} {record.role:<9} {record.name}  "
            f"created {_when(record.created_at)}, expires {_when(record.expires_at)}"
        )
    return 0


def _gateway(arguments: argparse.Namespace) -> int:
    from aiorch.core.settings import load_settings
    from aiorch.gateway.app import GatewayConfig, serve

    settings = load_settings()
    host = arguments.host or settings.gateway_host
    port = arguments.port or settings.gateway_port
    config = GatewayConfig(
        upstream_url=arguments.upstream or settings.gateway_upstream_url,
        upstream_auth_string=settings.gateway_upstream_auth_string,
        name=f"{host}:{port}",
        max_failures=settings.gateway_max_failures,
        failure_window_seconds=settings.gateway_failure_window_seconds,
        store_url=settings.gateway_store_url,
    )
    serve(config, host, port)
    return 0


def add_commands(commands: Any) -> None:
    """Add ``gateway`` and ``auth`` to the ``aiorch`` command's subcommands."""
    roles = [role.value for role in Role]
    gateway = commands.add_parser(
        "gateway", help="token authentication and roles in front of a Prefect server"
    )
    gateway.add_argument("--upstream", help="the Prefect server (AIORCH_GATEWAY_UPSTREAM_URL)")
    gateway.add_argument("--host", help="address to listen on (AIORCH_GATEWAY_HOST)")
    gateway.add_argument("--port", type=int, help="port to listen on (AIORCH_GATEWAY_PORT)")
    gateway.set_defaults(handler=_gateway)

    auth = commands.add_parser("auth", help="the gateway's tokens")
    subjects = auth.add_subparsers(dest="subject", required=True)
    token = subjects.add_parser("token", help="create, list, rotate or revoke tokens")
    actions = token.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="issue a token (printed once)")
    create.add_argument("--role", required=True, choices=roles, help="what the token may do")
    create.add_argument(
        "--expires", required=True, help="lifetime: 30d, 12h, 90m, 2w, 1d12h or never"
    )
    create.add_argument("--name", help="who or what uses it (default: role and time)")
    actions.add_parser("list", help="every token's id, state, role, name and expiry")
    revoke = actions.add_parser("revoke", help="revoke a token now")
    revoke.add_argument("token", help="its id, or a name (every active token of that name)")
    rotate = actions.add_parser("rotate", help="issue a successor; the old one ends")
    rotate.add_argument("token", help="its id or name")
    rotate.add_argument("--grace", help="how long the old token still works (default: not)")
    token.set_defaults(handler=_token)
