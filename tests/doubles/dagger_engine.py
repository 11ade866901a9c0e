"""A test double for a Dagger engine's GraphQL endpoint, named as a double on purpose.

No Dagger engine can run on the machines this project is tested on, so tests that must
exercise the real dagger-io SDK over real HTTP point it at this server. It speaks the
same protocol as an engine session: GraphQL over HTTP POST at ``/query``, with the session
token as the basic-auth user name. Queries are executed by graphql-core against a schema
given in SDL, with resolvers supplied by the test. Like the engine, which cancels a
query's context when its client disconnects, a resolver can ask :func:`client_gone`
whether the client of the request it serves has gone, and stop. The real-engine suite
runs the same scenarios wherever a ``dagger`` CLI exists.
"""

from __future__ import annotations

import base64
import json
import select
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from graphql import GraphQLSchema, build_schema, graphql_sync

from aiorch.testing.json_http import send_json

Resolver = Callable[..., Any]

_serving = threading.local()


def client_gone() -> bool:
    """Whether the client of the request this thread serves has closed its connection."""
    connection: socket.socket | None = getattr(_serving, "connection", None)
    if connection is None:
        return False
    readable, _, _ = select.select([connection], [], [], 0)
    if not readable:
        return False
    try:
        return connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


@dataclass
class EngineDouble:
    """A running double: where it listens, its token and what it was asked."""

    port: int
    session_token: str
    queries: list[str] = field(default_factory=list)
    rejected_auth: int = 0


def _handler(
    schema: GraphQLSchema, root: Any, double: EngineDouble, field_resolver: Resolver | None
) -> type:
    expected = "Basic " + base64.b64encode(f"{double.session_token}:".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path != "/query":
                send_json(self, 404, {"errors": [{"message": f"no route {self.path}"}]})
                return
            if self.headers.get("Authorization") != expected:
                double.rejected_auth += 1
                send_json(self, 401, {"errors": [{"message": "bad session token"}]})
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            double.queries.append(body["query"])
            _serving.connection = self.connection
            try:
                result = graphql_sync(
                    schema,
                    body["query"],
                    root_value=root,
                    variable_values=body.get("variables"),
                    operation_name=body.get("operationName"),
                    field_resolver=field_resolver,
                )
            finally:
                _serving.connection = None
            payload: dict[str, Any] = {"data": result.data}
            if result.errors:
                payload["errors"] = [error.formatted for error in result.errors]
            send_json(self, 200, payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Keep the test output quiet; requests are recorded in ``queries``."""

    return Handler


@contextmanager
def engine_double(
    sdl: str,
    root: Any,
    session_token: str,
    field_resolver: Resolver | None = None,
) -> Iterator[EngineDouble]:
    """Serve ``sdl`` with ``root`` resolvers on a free loopback port until the block exits.

    ``root`` is the query's root value (a mapping, or objects whose methods resolve
    fields); ``field_resolver`` replaces graphql-core's default resolver.
    """
    double = EngineDouble(port=0, session_token=session_token)
    handler = _handler(build_schema(sdl), root, double, field_resolver)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    double.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="dagger-engine-double", daemon=True)
    thread.start()
    try:
        yield double
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
