"""Which permission each route of Prefect's API needs; a route not listed is denied.

Paths are matched after the API prefix (``/api``): ``{}`` stands for one path segment
and a trailing ``/**`` for any further segments. Rules are tried in order and the
first that matches decides: reads first (a filter is a read whatever resource it
filters), then from the most to the least privileged. Every route
Prefect's server defines must match a rule: ``tests/test_gateway_routes.py`` lists the
real server's routes and fails on any that none maps (a new Prefect version that adds a
route fails that test instead of exposing the route).

Reading a block document's secret values (``include_secrets``, which Prefect's client
asks for when a flow loads a block) needs ``run``: a viewer sees the block without them.

Example:
    ```python
    from aiorch.gateway.route_table import required_permission

    print(required_permission("POST", "/flow_runs/filter"))  # read
    print(required_permission("POST", "/deployments/"))  # author
    print(required_permission("GET", "/no_such_thing"))  # None: denied
    ```
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from aiorch.gateway.roles import Permission

READ, RUN, AUTHOR, ADMIN = Permission.READ, Permission.RUN, Permission.AUTHOR, Permission.ADMIN
# Paths a caller reaches without a token: probes, as Prefect's own auth leaves them open.
PUBLIC = frozenset({("GET", "/health"), ("GET", "/ready")})
# Resources of Prefect's API whose reads every role may make.
RESOURCES = (
    "admin/storage",  # which block holds results: flow runs read it
    "admin/version",
    "artifacts",
    "automations",
    "block_capabilities",
    "block_documents",
    "block_schemas",
    "block_types",
    "collections",
    "concurrency_limits",
    "csrf-token",
    "deployments",
    "events",
    "flow_run_states",
    "flow_runs",
    "flows",
    "hello",
    "logs",
    "observed-states",
    "saved_searches",
    "task_run_states",
    "task_runs",
    "task_workers",
    "ui",
    "v2/concurrency_limits",
    "variables",
    "version",
    "work_pools",
    "work_queues",
)
# The last segments of POST routes that only read: filters, counts, histories.
READING_POSTS = (
    "count",
    "count-by/{}",
    "count-deployments",
    "count-task-runs",
    "dashboard/counts",
    "filter",
    "history",
    "latest/count",
    "latest/filter",
    "lateness",
    "next-runs",
    "paginate",
    "validate",
    "{}/concurrency_status",
    "{}/input/filter",
)


@dataclass(frozen=True)
class RouteRule:
    """``methods`` on paths matching ``template`` need ``permission``."""

    permission: Permission
    methods: frozenset[str]
    template: str


def _rule(permission: Permission, methods: str, *templates: str) -> list[RouteRule]:
    chosen = frozenset(methods.split())
    return [RouteRule(permission, chosen, template) for template in templates]


@cache
def _compiled(template: str) -> re.Pattern[str]:
    body, wildcard = (template[:-3], True) if template.endswith("/**") else (template, False)
    regex = "[^/]+".join(re.escape(part) for part in body.split("{}")).rstrip("/")
    return re.compile(regex + ("(/.*)?" if wildcard else "/?"))


WEBSOCKET = "WEBSOCKET"
RULES: tuple[RouteRule, ...] = (
    # Reads of every resource, and the POSTs that only filter and count.
    *(rule for name in RESOURCES for rule in _rule(READ, "GET HEAD", f"/{name}/**")),
    *(
        rule
        for name in RESOURCES
        for ending in READING_POSTS
        for rule in _rule(READ, "POST", f"/{name}/{ending}", f"/{name}/{{}}/{ending}")
    ),
    *_rule(
        READ,
        "POST",
        "/templates/validate",
        "/ui/**",
        "/work_pools/{}/queues/filter",
        "/work_pools/{}/workers/filter",
    ),
    # Administration of the server itself: its settings, storage and workers' pools.
    *_rule(ADMIN, "GET PUT DELETE", "/admin/settings", "/pid"),
    *_rule(ADMIN, "PUT DELETE", "/admin/storage"),
    *_rule(ADMIN, "POST", "/admin/**", "/block_types/install_system_block_types"),
    *_rule(ADMIN, "POST PUT PATCH DELETE", "/work_pools/", "/work_pools/{}", "/work_queues/"),
    *_rule(ADMIN, "PATCH DELETE", "/work_queues/{}"),
    *_rule(ADMIN, "POST", "/work_pools/{}/queues"),
    *_rule(ADMIN, "PATCH DELETE", "/work_pools/{}/queues/{}", "/work_pools/{}/workers/{}"),
    # Streams: what happened (read), what happens (run: emitting events, serving tasks).
    *_rule(READ, WEBSOCKET, "/events/out", "/logs/out"),
    *_rule(RUN, WEBSOCKET, "/events/in", "/task_runs/subscriptions/**", "/work_pools/{}/**"),
    # Running things: flows and their runs, as a worker or a flow process does.
    *_rule(RUN, "POST", "/flows/", "/flow_runs/", "/task_runs/", "/logs/", "/artifacts/"),
    *_rule(RUN, "POST", "/events", "/events/"),
    *_rule(RUN, "PATCH", "/flow_runs/{}", "/flow_runs/{}/labels", "/task_runs/{}"),
    *_rule(RUN, "PATCH", "/artifacts/{}"),
    *_rule(
        RUN,
        "POST",
        "/flow_runs/{}/set_state",
        "/flow_runs/{}/resume",
        "/flow_runs/{}/input",
        "/flow_runs/bulk_set_state",
        "/task_runs/{}/set_state",
        "/deployments/{}/create_flow_run",
        "/deployments/{}/create_flow_run/bulk",
        "/deployments/get_scheduled_flow_runs",
        "/work_pools/{}/get_scheduled_flow_runs",
        "/work_pools/{}/workers/heartbeat",
        "/work_queues/{}/get_runs",
        "/concurrency_limits/increment",
        "/concurrency_limits/decrement",
        "/v2/concurrency_limits/increment",
        "/v2/concurrency_limits/increment-with-lease",
        "/v2/concurrency_limits/decrement",
        "/v2/concurrency_limits/decrement-with-lease",
        "/v2/concurrency_limits/leases/{}/renew",
    ),
    *_rule(RUN, "DELETE", "/flow_runs/{}/input/{}"),
    # Authoring: what others run, and the configuration they run with.
    *_rule(
        AUTHOR,
        "POST",
        "/deployments/",
        "/deployments/{}/schedule",
        "/deployments/{}/schedules",
        "/deployments/{}/pause_deployment",
        "/deployments/{}/resume_deployment",
        "/deployments/bulk_delete",
        "/flows/bulk_delete",
        "/flow_runs/bulk_delete",
        "/block_documents/",
        "/block_schemas/",
        "/block_types/",
        "/variables/",
        "/automations/",
        "/concurrency_limits/",
        "/concurrency_limits/tag/{}/reset",
        "/v2/concurrency_limits/",
    ),
    *_rule(
        AUTHOR,
        "PUT PATCH DELETE",
        "/deployments/{}",
        "/deployments/{}/schedules/{}",
        "/flows/{}",
        "/flow_runs/{}",
        "/task_runs/{}",
        "/artifacts/{}",
        "/block_documents/{}",
        "/block_schemas/{}",
        "/block_types/{}",
        "/variables/{}",
        "/variables/name/{}",
        "/automations/{}",
        "/automations/owned-by/{}",
        "/concurrency_limits/{}",
        "/concurrency_limits/tag/{}",
        "/v2/concurrency_limits/{}",
        "/saved_searches/",
        "/saved_searches/{}",
    ),
)

_SECRET_READS = (
    ("GET", "/block_documents/{}"),
    ("GET", "/block_types/slug/{}/block_documents"),
    ("GET", "/block_types/slug/{}/block_documents/name/{}"),
    ("POST", "/block_documents/filter"),
)


def asks_for_secrets(method: str, path: str, query: Mapping[str, str], body: bytes) -> bool:
    """Whether a request reads block documents with their secret values.

    Prefect takes ``include_secrets`` as a query parameter on reads by id or name and in
    the JSON body of ``/block_documents/filter``.
    """
    if not any(m == method and _compiled(t).fullmatch(path) for m, t in _SECRET_READS):
        return False
    if query.get("include_secrets", "").lower() in {"true", "1", "yes", "on"}:
        return True
    if method == "POST" and body:
        try:
            payload = json.loads(body)
        except ValueError:
            return False
        return isinstance(payload, dict) and payload.get("include_secrets") is True
    return False


def _first_segment(path: str) -> str:
    return path.lstrip("/").split("/", 1)[0]


@cache
def _rules_for(method: str, segment: str) -> tuple[re.Pattern[str], tuple[Permission, ...]]:
    """One pattern of the rules for ``method`` on paths under ``segment``, in order.

    A request tries one alternation of the few rules of its resource, in C, where a loop
    over all rules cost half a millisecond; the first alternative that matches is the
    first rule.
    """
    chosen = [
        rule
        for rule in RULES
        if method in rule.methods and _first_segment(rule.template) in (segment, "{}")
    ]
    alternatives = "|".join(
        f"(?P<r{index}>{_compiled(rule.template).pattern})" for index, rule in enumerate(chosen)
    )
    return re.compile(alternatives or "(?!)"), tuple(rule.permission for rule in chosen)


def required_permission(
    method: str,
    path: str,
    query: Mapping[str, str] | None = None,
    body: bytes = b"",
) -> Permission | None:
    """The permission ``method`` on ``path`` (after ``/api``) needs; None if unmapped.

    ``method`` is an HTTP method, or ``WEBSOCKET`` for a websocket connection.
    """
    pattern, permissions = _rules_for(method.upper(), _first_segment(path))
    matched = pattern.fullmatch(path)
    if matched is None or matched.lastgroup is None:
        return None
    permission = permissions[int(matched.lastgroup[1:])]
    if permission == READ and asks_for_secrets(method.upper(), path, query or {}, body):
        return RUN
    return permission


def is_public(method: str, path: str) -> bool:
    """Whether ``method`` on ``path`` (after ``/api``) is open to callers without a token."""
    return (method.upper(), path.rstrip("/") or "/") in PUBLIC
