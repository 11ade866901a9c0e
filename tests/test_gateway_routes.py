"""The gateway's route table covers every route of Prefect's API, and denies the rest."""

from __future__ import annotations

import re

import pytest
from prefect.server.api.server import API_ROUTERS
from starlette.routing import WebSocketRoute

from aiorch.gateway.roles import Permission, Role
from aiorch.gateway.route_table import asks_for_secrets, is_public, required_permission


def _prefect_routes() -> list[tuple[str, str]]:
    found = [("GET", "/health"), ("GET", "/version")]  # added by the app, not a router
    for router in API_ROUTERS:
        for route in router.routes:
            path: str = getattr(route, "path", "")
            if isinstance(route, WebSocketRoute) or type(route).__name__ == "APIWebSocketRoute":
                found.append(("WEBSOCKET", path))
                continue
            methods = getattr(route, "methods", None) or set()
            found.extend((method, path) for method in sorted(methods) if method != "HEAD")
    return found


def _sample(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "a1b2", template)


def test_every_route_prefect_defines_is_mapped() -> None:
    routes = _prefect_routes()
    assert len(routes) > 150  # Prefect 3.9 has about 190: the walk found them
    unmapped = [
        f"{method} {path}"
        for method, path in routes
        if not is_public(method, _sample(path))
        and required_permission(method, _sample(path)) is None
    ]
    assert unmapped == [], "map these in aiorch/gateway/route_table.py"


def test_a_route_no_rule_maps_is_denied() -> None:
    assert required_permission("GET", "/brand_new_resource") is None
    assert required_permission("POST", "/flows/a1b2/brand_new_action") is None
    assert required_permission("TRACE", "/flows/filter") is None


@pytest.mark.parametrize(
    ("method", "path", "needed"),
    [
        ("POST", "/flow_runs/filter", Permission.READ),
        ("POST", "/work_pools/filter", Permission.READ),
        ("GET", "/admin/version", Permission.READ),
        ("WEBSOCKET", "/events/out", Permission.READ),
        ("POST", "/flow_runs/a1b2/set_state", Permission.RUN),
        ("POST", "/deployments/a1b2/create_flow_run", Permission.RUN),
        ("POST", "/work_pools/pool/get_scheduled_flow_runs", Permission.RUN),
        ("WEBSOCKET", "/events/in", Permission.RUN),
        ("POST", "/deployments/", Permission.AUTHOR),
        ("DELETE", "/variables/name/x", Permission.AUTHOR),
        ("POST", "/work_pools/", Permission.ADMIN),
        ("GET", "/admin/settings", Permission.ADMIN),
        ("GET", "/admin/storage", Permission.READ),
        ("PUT", "/admin/storage", Permission.ADMIN),
    ],
)
def test_routes_need_the_permission_of_what_they_do(
    method: str, path: str, needed: Permission
) -> None:
    assert required_permission(method, path) == needed


def test_reading_block_secrets_needs_run() -> None:
    read = ("GET", "/block_documents/a1b2")
    assert required_permission(*read) == Permission.READ
    assert required_permission(*read, query={"include_secrets": "true"}) == Permission.RUN
    body = b'{"include_secrets": true, "limit": 5}'
    assert required_permission("POST", "/block_documents/filter", body=body) == Permission.RUN
    assert not asks_for_secrets("POST", "/block_documents/filter", {}, b"{not json")
    by_name = "/block_types/slug/secret/block_documents/name/key"
    assert required_permission("GET", by_name, query={"include_secrets": "True"}) == Permission.RUN


def test_roles_grant_their_level_and_every_level_below() -> None:
    assert [Role.VIEWER.grants(p) for p in Permission] == [True, False, False, False]
    assert [Role.OPERATOR.grants(p) for p in Permission] == [True, True, False, False]
    assert [Role.AUTHOR.grants(p) for p in Permission] == [True, True, True, False]
    assert [Role.ADMIN.grants(p) for p in Permission] == [True, True, True, True]


def test_only_health_probes_are_public() -> None:
    assert is_public("GET", "/health")
    assert is_public("GET", "/ready")
    assert not is_public("POST", "/health")
    assert not is_public("GET", "/version")
