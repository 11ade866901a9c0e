"""``aiorch metrics serve``: the Prometheus exporter as a long-running command."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any


def _serve(arguments: argparse.Namespace) -> int:
    from aiorch.metrics.server import MetricsServer

    server = MetricsServer(arguments.host, arguments.port)
    print(f"aiorch metrics at {server.url}", file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


def add_commands(commands: Any) -> None:
    """Add ``metrics`` to the ``aiorch`` command's subcommands."""
    metrics = commands.add_parser("metrics", help="aiorch's figures for Prometheus")
    actions = metrics.add_subparsers(dest="action", required=True)
    serve = actions.add_parser(
        "serve", help="serve /metrics, read from the Prefect API at PREFECT_API_URL"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=9464, help="port to listen on")
    serve.set_defaults(handler=_serve)
