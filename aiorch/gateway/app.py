"""The gateway: token authentication and roles in front of a Prefect server's API and UI.

It takes what Prefect's own clients send, so the ``prefect`` CLI, the Python client,
workers, flow runs and the UI work through it unchanged:

- ``Authorization: Bearer TOKEN`` (``PREFECT_API_KEY=TOKEN``);
- ``Authorization: Basic base64(NAME:TOKEN)`` (``PREFECT_API_AUTH_STRING=NAME:TOKEN``,
  any name; the UI's login page sends what is typed there, the token alone);
- on websockets (events and logs), the same header on the upgrade or the token in the
  ``prefect`` subprotocol's first ``auth`` message.

Each ``/api`` request is authenticated, then checked against the route table
(:mod:`aiorch.gateway.route_table`; an unknown route is denied), then forwarded with the
caller's credentials replaced by the server's own auth string, so the server behind can
accept the gateway alone. The UI's pages and files carry no data and pass unchecked;
the UI settings are rewritten so the browser logs in and calls the API through the
gateway. Failed attempts are counted per client (429 with ``Retry-After`` past the
limit), and every refusal is audited (:mod:`aiorch.gateway.audit`).

Example:
    ```python
    from aiorch.gateway.app import GatewayConfig, gateway_app

    app = gateway_app(GatewayConfig(upstream_url="http://127.0.0.1:4200"))
    # uvicorn.run(app, host="127.0.0.1", port=4280)
    ```
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote

import aiohttp
import anyio
from pydantic import ConfigDict, Field, SecretStr
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol
from yarl import URL

from aiorch.core.models import AiorchModel
from aiorch.gateway.audit import AuditEntry, AuditTrail
from aiorch.gateway.errors import AuthenticationFailed
from aiorch.gateway.limiter import FailureLimiter
from aiorch.gateway.roles import Permission
from aiorch.gateway.route_table import is_public, required_permission
from aiorch.gateway.tokens import Principal, TokenStore

API = "/api"
UI_SETTINGS = "/ui-settings"
# Headers that belong to one connection (RFC 9110 7.6.1), and those the gateway sets.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "authorization",
    }
)
_WS_POLICY_VIOLATION = 1008
_WS_TRY_AGAIN_LATER = 1013
BUFFERED_BYTES = 1 << 20
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class GatewayConfig(AiorchModel):
    """Where the gateway forwards to, and how strictly it counts failures."""

    model_config = ConfigDict(frozen=True, hide_input_in_errors=True)

    upstream_url: str = Field(description="The Prefect server, without /api.")
    upstream_auth_string: SecretStr | None = Field(
        default=None,
        description="The server's PREFECT_SERVER_API_AUTH_STRING, which the gateway sends.",
    )
    name: str = Field(default="gateway", description="The gateway's name in audit events.")
    max_failures: int = Field(default=10, ge=1)
    failure_window_seconds: float = Field(default=60.0, gt=0)
    store_url: SecretStr | None = Field(
        default=None, description="The token store's database; the settings' default if None."
    )

    @property
    def upstream_api_url(self) -> str:
        """The server's API URL."""
        return self.upstream_url.rstrip("/") + API

    def upstream_authorization(self) -> str | None:
        """The Authorization header the server behind expects, if it has an auth string."""
        if self.upstream_auth_string is None:
            return None
        raw = self.upstream_auth_string.get_secret_value().encode()
        return f"Basic {base64.b64encode(raw).decode()}"


def is_canonical(path: str) -> bool:
    """Whether ``path`` names one resource as written: no dot or empty segments, no backslash.

    The route table decides on the path as sent; a server behind that resolved ``..``
    differently would serve another route than the one checked.
    """
    decoded = unquote(path)
    segments = decoded.split("/")[1:]
    return (
        decoded.startswith("/")
        and "\\" not in decoded
        and all(segment not in {".", ".."} for segment in segments)
        and all(segments[:-1])
    )


def presented_token(credential: str | None) -> str | None:
    """The token in an Authorization header value (Bearer or Basic); None if there is none.

    Basic credentials are ``NAME:TOKEN`` (Prefect's auth string) or the token alone (what
    the UI's login page sends).
    """
    if not credential:
        return None
    scheme, _, value = credential.strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return _from_auth_string(decoded)


def _from_auth_string(text: str) -> str | None:
    """The token in Prefect's auth string ``NAME:TOKEN``, or ``text`` without a colon."""
    _, colon, after = text.rpartition(":")
    return (after if colon else text) or None


def _problem(status: int, title: str, detail: str, **headers: str) -> JSONResponse:
    # Prefect's clients read exception_message; RFC 9457 readers read the rest.
    return JSONResponse(
        {
            "type": "about:blank",
            "title": title,
            "status": status,
            "detail": detail,
            "exception_message": detail,
        },
        status_code=status,
        headers=headers,
        media_type="application/problem+json",
    )


class Gateway:
    """One gateway process: its token store, failure counts, audit trail and upstream."""

    def __init__(self, config: GatewayConfig, store: TokenStore | None = None) -> None:
        self.config = config
        self.store = store or (
            TokenStore(config.store_url.get_secret_value())
            if config.store_url is not None
            else TokenStore.default()
        )
        self.limiter = FailureLimiter(config.max_failures, config.failure_window_seconds)
        self.audit = AuditTrail(config.name)
        self._upstream: aiohttp.ClientSession | None = None

    @asynccontextmanager
    async def lifespan(self, _: Starlette) -> AsyncIterator[None]:
        """Open the upstream connection pool for the app's life."""
        # aiohttp, not httpx: its C parser made a forwarded call cost half the CPU.
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        ) as session:
            self._upstream = session
            try:
                yield
            finally:
                self._upstream = None

    def _session(self) -> aiohttp.ClientSession:
        assert self._upstream is not None, "the gateway app runs inside its lifespan"
        return self._upstream

    def _url(self, path: str, query: str = "") -> URL:
        # Already encoded as the caller sent it: passed on byte for byte.
        return URL(
            self.config.upstream_url.rstrip("/") + path + (f"?{query}" if query else ""),
            encoded=True,
        )

    def app(self) -> Starlette:
        """The ASGI application."""
        return Starlette(
            routes=[
                Route("/{path:path}", self.http, methods=METHODS),
                WebSocketRoute("/{path:path}", self.websocket),
            ],
            lifespan=self.lifespan,
        )

    async def _authenticate(self, token: str | None) -> Principal:
        if token is None:
            raise AuthenticationFailed("missing")
        if self.store.is_warm(token):
            return self.store.verify(token)
        # A token's first use runs scrypt (tens of milliseconds), a row read blocks too:
        # off the loop.
        return await anyio.to_thread.run_sync(self.store.verify, token)

    async def _audit(self, entry: AuditEntry) -> None:
        await self.audit.record(entry, self._post_events)

    async def _post_events(self, events: list[dict[str, Any]]) -> None:
        authorization = self.config.upstream_authorization()
        headers = {"authorization": authorization} if authorization else {}
        async with self._session().post(
            self._url(f"{API}/events"), json=events, headers=headers
        ) as response:
            response.raise_for_status()

    async def _identify(
        self, client: str, method: str, api_path: str, token: str | None
    ) -> Principal | Response:
        """Who the caller is, or the refusal to send (audited): 429 or 401."""
        now = time.monotonic()
        wait = self.limiter.retry_after(client, now)
        if wait is not None:
            await self._audit(
                AuditEntry(
                    outcome="rate-limited",
                    client=client,
                    method=method,
                    path=api_path,
                    reason=f"too many failed attempts; locked out for {wait} s",
                )
            )
            return _problem(
                429,
                "Too many failed attempts",
                f"Too many failed attempts from this client; try again in {wait} s.",
                **{"Retry-After": str(wait)},
            )
        try:
            principal = await self._authenticate(token)
        except AuthenticationFailed as failed:
            self.limiter.failed(client, now)
            await self._audit(
                AuditEntry(
                    outcome="auth-failed",
                    client=client,
                    method=method,
                    path=api_path,
                    reason=failed.reason,
                    token_id=failed.token_id,
                )
            )
            return _problem(
                401,
                "Unauthorized",
                "Unauthorized",
                **{"WWW-Authenticate": 'Bearer realm="aiorch"'},
            )
        return principal

    async def _authorize(
        self,
        principal: Principal,
        client: str,
        method: str,
        api_path: str,
        needed: Permission | None,
    ) -> Response | None:
        """The 403 to send (audited) if ``principal``'s role lacks ``needed``; else None."""
        if needed is None or not principal.role.grants(needed):
            reason = (
                "no rule maps this route: denied by default"
                if needed is None
                else f"role {principal.role} lacks permission {needed}"
            )
            await self._audit(
                AuditEntry(
                    outcome="denied",
                    client=client,
                    method=method,
                    path=api_path,
                    reason=reason,
                    token_id=principal.token_id,
                    token_name=principal.name,
                    role=principal.role,
                    needed=needed,
                )
            )
            return _problem(403, "Forbidden", f"Forbidden: {reason} ({method} {api_path}).")
        return None

    async def http(self, request: Request) -> Response:
        """Check and forward one HTTP request."""
        path = request.url.path
        if not is_canonical(path):
            return _problem(
                400,
                "Bad path",
                "The path has '.' or '..' segments, empty segments or backslashes; send it "
                "resolved.",
            )
        if path == UI_SETTINGS:
            return await self._ui_settings(request)
        if not (path == API or path.startswith(API + "/")):
            # The UI's pages and files: no data, and never the server's credential.
            return await self._forward(request, await request.body(), credential=False)
        api_path = path.removeprefix(API) or "/"
        if is_public(request.method, api_path):
            return await self._forward(request, b"")
        client = request.client.host if request.client else "unknown"
        token = presented_token(request.headers.get("authorization"))
        principal = await self._identify(client, request.method, api_path, token)
        if isinstance(principal, Response):
            return principal
        # Read only for a known caller: a stranger's body is refused unread.
        body = await request.body()
        needed = required_permission(request.method, api_path, request.query_params, body)
        refused = await self._authorize(principal, client, request.method, api_path, needed)
        return refused or await self._forward(request, body)

    def _upstream_headers(self, request: Request, *, credential: bool = True) -> dict[str, str]:
        forwarded = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        forwarded["x-forwarded-for"] = request.client.host if request.client else "unknown"
        forwarded["x-forwarded-proto"] = request.url.scheme
        forwarded["x-forwarded-host"] = request.headers.get("host", "")
        authorization = self.config.upstream_authorization()
        if credential and authorization is not None:
            forwarded["authorization"] = authorization
        return forwarded

    async def _forward(self, request: Request, body: bytes, *, credential: bool = True) -> Response:
        response = await self._session().request(
            request.method,
            # As the caller encoded it: the server decodes it as the route table saw it.
            self._url(
                request.scope.get("raw_path", b"").decode("latin-1") or request.url.path,
                request.url.query,
            ),
            headers=self._upstream_headers(request, credential=credential),
            data=body or None,
            allow_redirects=False,
        )
        headers = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP}
        if (response.content_length or BUFFERED_BYTES) < BUFFERED_BYTES:
            # Most API answers are small: one body is cheaper than a stream of chunks.
            async with response:
                body = await response.read()
            return Response(body, status_code=response.status, headers=headers)
        return StreamingResponse(
            response.content.iter_any(),
            status_code=response.status,
            headers=headers,
            background=BackgroundTask(response.release),
        )

    async def _ui_settings(self, request: Request) -> Response:
        """The server's UI settings, pointing the browser at the gateway and its login."""
        headers = self._upstream_headers(request, credential=False)
        headers.pop("accept-encoding", None)  # read here, so asked for plain
        async with self._session().get(self._url(UI_SETTINGS), headers=headers) as response:
            settings = await response.json()
            status = response.status
        settings["api_url"] = str(request.base_url).rstrip("/") + API
        settings["auth"] = "BASIC"
        return JSONResponse(settings, status_code=status)

    async def websocket(self, websocket: WebSocket) -> None:
        """Check a websocket (events, logs) and relay it to the server."""
        path = websocket.url.path
        if not is_canonical(path):
            await _close(websocket, _WS_POLICY_VIOLATION, "Bad path")
            return
        api_path = path.removeprefix(API) or "/"
        client = websocket.client.host if websocket.client else "unknown"
        offered = [
            part.strip()
            for header in websocket.headers.getlist("sec-websocket-protocol")
            for part in header.split(",")
        ]
        speaks_prefect = "prefect" in offered
        token = presented_token(websocket.headers.get("authorization"))
        if speaks_prefect:
            await websocket.accept(subprotocol="prefect")
            try:
                first = await websocket.receive_json()
            except (WebSocketDisconnect, json.JSONDecodeError, KeyError):
                await _close(websocket, _WS_POLICY_VIOLATION, "Expected 'auth' message")
                return
            if not isinstance(first, dict) or first.get("type") != "auth":
                await _close(websocket, _WS_POLICY_VIOLATION, "Expected 'auth' message")
                return
            sent = first.get("token")
            token = token or (_from_auth_string(sent) if isinstance(sent, str) else None)
        principal = await self._identify(client, "WEBSOCKET", api_path, token)
        refused = (
            principal
            if isinstance(principal, Response)
            else await self._authorize(
                principal, client, "WEBSOCKET", api_path, required_permission("WEBSOCKET", api_path)
            )
        )
        if refused is not None:
            code = _WS_TRY_AGAIN_LATER if refused.status_code == 429 else _WS_POLICY_VIOLATION
            reason = {401: "Unauthorized", 403: "Forbidden"}.get(refused.status_code, "Try later")
            await _close(websocket, code, reason)
            return
        if not speaks_prefect:
            await websocket.accept()
        await self._relay(websocket, path, speaks_prefect)

    async def _relay(self, websocket: WebSocket, path: str, speaks_prefect: bool) -> None:
        url = self.config.upstream_url.replace("http", "ws", 1).rstrip("/") + path
        if websocket.url.query:
            url += "?" + websocket.url.query
        authorization = self.config.upstream_authorization()
        headers = {"Authorization": authorization} if authorization else {}
        auth = self.config.upstream_auth_string
        prefect_protocol = [Subprotocol("prefect")]
        async with connect(
            url, subprotocols=prefect_protocol, additional_headers=headers
        ) as upstream:
            await upstream.send(
                json.dumps({"type": "auth", "token": auth.get_secret_value() if auth else None})
            )
            answer = await upstream.recv()
            if speaks_prefect:
                await websocket.send_text(answer if isinstance(answer, str) else answer.decode())
            async with anyio.create_task_group() as group:
                group.start_soon(_to_upstream, websocket, upstream, group.cancel_scope)
                group.start_soon(_to_client, upstream, websocket, group.cancel_scope)


async def _to_upstream(
    websocket: WebSocket, upstream: ClientConnection, scope: anyio.CancelScope
) -> None:
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            if message.get("text") is not None:
                await upstream.send(message["text"])
            elif message.get("bytes") is not None:
                await upstream.send(message["bytes"])
    except (WebSocketDisconnect, ConnectionClosed):
        pass
    finally:
        scope.cancel()


async def _to_client(
    upstream: ClientConnection, websocket: WebSocket, scope: anyio.CancelScope
) -> None:
    try:
        async for message in upstream:
            if isinstance(message, str):
                await websocket.send_text(message)
            else:
                await websocket.send_bytes(message)
        close = upstream.close_code or 1000
        await _close(websocket, close, upstream.close_reason or "")
    except (WebSocketDisconnect, ConnectionClosed):
        pass
    finally:
        scope.cancel()


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state != WebSocketState.DISCONNECTED:
        await websocket.close(code, reason)


def gateway_app(config: GatewayConfig, store: TokenStore | None = None) -> Starlette:
    """The ASGI app of a gateway in front of ``config.upstream_url``."""
    return Gateway(config, store).app()


def serve(config: GatewayConfig, host: str, port: int) -> None:
    """Run the gateway in the foreground until interrupted."""
    import logging

    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    print(
        f"aiorch gateway: http://{host}:{port} -> {config.upstream_url} "
        f"(UI: http://{host}:{port}/v2/, API: http://{host}:{port}/api)",
        flush=True,
    )
    uvicorn.run(
        gateway_app(config),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        ws="websockets-sansio",
        loop="uvloop",
        http="httptools",
    )
