"""The gateway in front of a real Prefect server: tokens, roles, refusals and their audit.

The server behind accepts only the gateway (its own auth string); every test reaches it
through ``aiorch gateway`` with tokens of the store the gateway reads.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from aiorch.gateway.errors import AuthenticationFailed
from aiorch.gateway.roles import Role
from aiorch.gateway.tokens import TokenStore
from aiorch.testing.gateway import GuardedServer
from aiorch.testing.prefect_server import poll_events

AIORCH = str(Path(sys.executable).with_name("aiorch"))
PREFECT = str(Path(sys.executable).with_name("prefect"))


def issue(guarded: GuardedServer, role: Role, **options: Any) -> str:
    options.setdefault("expires_in", timedelta(hours=1))
    issued = TokenStore(guarded.store_url).create(f"test-{role}-{uuid4().hex[:6]}", role, **options)
    return issued.token.get_secret_value()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def client_from(guarded: GuardedServer, address: str) -> httpx.Client:
    """A client from another loopback address: failed attempts count per client address."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=guarded.api_url, transport=transport, timeout=30)


@pytest.fixture(scope="module")
def tokens(guarded: GuardedServer) -> dict[Role, str]:
    return {role: issue(guarded, role) for role in Role}


@pytest.fixture(scope="module")
def api(guarded: GuardedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=guarded.api_url, timeout=30) as client:
        yield client


def test_the_server_behind_refuses_everyone_but_the_gateway(
    guarded: GuardedServer, tokens: dict[Role, str]
) -> None:
    direct = httpx.post(
        f"{guarded.upstream_api_url}/flows/filter", json={}, headers=bearer(tokens[Role.ADMIN])
    )
    assert direct.status_code == 401


@dataclass(frozen=True)
class Probe:
    """One real request, the least role that may make it, and its body per role."""

    method: str
    path: str
    least: Role
    body: Callable[[Role], Any] | None = None
    params: dict[str, str] | None = None


def _matrix(api: httpx.Client, admin: str) -> list[Probe]:
    """Real requests of every permission level."""
    flow = api.post("/flows/", json={"name": f"matrix-{uuid4().hex[:6]}"}, headers=bearer(admin))
    flow.raise_for_status()
    flow_id = flow.json()["id"]
    unique = uuid4().hex[:6]
    return [
        Probe("POST", "/flows/filter", Role.VIEWER, lambda _: {}),
        Probe("GET", f"/flows/{flow_id}", Role.VIEWER),
        Probe("GET", "/admin/version", Role.VIEWER),
        Probe("POST", "/events/filter", Role.VIEWER, lambda _: {}),
        Probe("POST", "/flow_runs/", Role.OPERATOR, lambda _: {"flow_id": flow_id}),
        Probe("POST", "/logs/", Role.OPERATOR, lambda _: []),
        Probe(
            "POST", "/block_documents/filter", Role.OPERATOR, lambda _: {"include_secrets": True}
        ),
        Probe(
            "GET",
            "/block_types/slug/secret/block_documents",
            Role.OPERATOR,
            params={"include_secrets": "true"},
        ),
        Probe(
            "POST", "/variables/", Role.AUTHOR, lambda r: {"name": f"v_{unique}_{r}", "value": 1}
        ),
        Probe("PATCH", f"/flows/{flow_id}", Role.AUTHOR, lambda _: {"tags": ["x"]}),
        Probe("GET", "/admin/settings", Role.ADMIN),
        Probe(
            "POST",
            "/work_pools/",
            Role.ADMIN,
            lambda r: {"name": f"p-{unique}-{r}", "type": "process"},
        ),
    ]


def test_each_role_reaches_what_it_may_and_is_refused_the_rest(
    api: httpx.Client, tokens: dict[Role, str]
) -> None:
    levels = list(Role)
    probes = _matrix(api, tokens[Role.ADMIN])
    outcomes = {}
    for probe in probes:
        for role in Role:
            response = api.request(
                probe.method,
                probe.path,
                headers=bearer(tokens[role]),
                json=probe.body(role) if probe.body else None,
                params=probe.params,
            )
            allowed = levels.index(role) >= levels.index(probe.least)
            outcomes[(probe.method, probe.path, role)] = (allowed, response.status_code)
    wrong = {
        key: status
        for key, (allowed, status) in outcomes.items()
        if (status == 403) == allowed or status == 401 or status >= 500
    }
    assert wrong == {}
    assert len(outcomes) == len(probes) * len(Role)


def test_a_refusal_names_the_role_and_the_permission_it_lacks(
    api: httpx.Client, tokens: dict[Role, str]
) -> None:
    refused = api.post("/deployments/", json={}, headers=bearer(tokens[Role.OPERATOR]))
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert "role operator lacks permission author" in refused.json()["detail"]


def test_a_route_no_rule_maps_is_denied_even_to_an_admin(
    api: httpx.Client, tokens: dict[Role, str]
) -> None:
    refused = api.get("/no_such_resource/1", headers=bearer(tokens[Role.ADMIN]))
    assert refused.status_code == 403
    assert "no rule maps this route" in refused.json()["detail"]


def test_expired_revoked_forged_and_malformed_tokens_all_get_the_same_401(
    guarded: GuardedServer, api: httpx.Client, tokens: dict[Role, str]
) -> None:
    store = TokenStore(guarded.store_url)
    long_ago = datetime.now(UTC) - timedelta(days=2)
    expired = store.create("expired", Role.ADMIN, expires_in=timedelta(days=1), now=long_ago)
    revoked = store.create("revoked", Role.ADMIN, expires_in=None)
    store.revoke(revoked.record.id)
    valid = issue(guarded, Role.ADMIN)
    forged = valid[:-4] + ("AAAA" if not valid.endswith("AAAA") else "BBBB")
    since = datetime.now(UTC)
    credentials = {
        "expired": bearer(expired.token.get_secret_value()),
        "revoked": bearer(revoked.token.get_secret_value()),
        "forged": bearer(forged),
        "malformed": bearer("not-a-token"),
        "unknown": bearer("aiorch_0123456789ab_" + "A" * 43),
        "missing": {},
        "bad basic": {"Authorization": "Basic %%%"},
        "other scheme": {"Authorization": f"Token {valid}"},
    }
    with client_from(guarded, "127.0.0.3") as client:
        answers = {
            name: client.post("/flows/filter", json={}, headers=headers)
            for name, headers in credentials.items()
        }
    assert {name: answer.status_code for name, answer in answers.items()} == dict.fromkeys(
        credentials, 401
    )
    assert {answer.json()["detail"] for answer in answers.values()} == {"Unauthorized"}
    assert api.post("/flows/filter", json={}, headers=bearer(valid)).status_code == 200
    events = poll_events(
        guarded.api_url,
        None,
        count=len(credentials),
        names=["aiorch.gateway.auth-failed"],
        since=since,
        headers=bearer(tokens[Role.VIEWER]),
    )
    reasons = sorted(event["payload"]["reason"] for event in events)
    assert reasons == sorted(
        ["expired", "revoked", "forged", "malformed", "unknown", "missing", "missing", "missing"]
    )


def test_failed_attempts_lock_the_client_out_with_retry_after(
    guarded: GuardedServer, tokens: dict[Role, str]
) -> None:
    with client_from(guarded, "127.0.0.2") as attacker:
        statuses = [
            attacker.post("/flows/filter", json={}, headers=bearer(f"guess-{n}")).status_code
            for n in range(10)
        ]
        locked = attacker.post("/flows/filter", json={}, headers=bearer(tokens[Role.VIEWER]))
    assert statuses == [401] * 10
    assert locked.status_code == 429
    assert 1 <= int(locked.headers["Retry-After"]) <= 60
    elsewhere = httpx.post(
        f"{guarded.api_url}/flows/filter", json={}, headers=bearer(tokens[Role.VIEWER])
    )
    assert elsewhere.status_code == 200


def test_the_stock_prefect_cli_works_with_an_api_key_or_an_auth_string(
    guarded: GuardedServer, tokens: dict[Role, str], scratch_dir: Path
) -> None:
    def prefect(*argv: str, **settings: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PREFECT_API_URL": guarded.api_url, **settings}
        env["PREFECT_HOME"] = str(scratch_dir)
        env["COLUMNS"] = "250"  # rich cuts table cells to the terminal's width
        return subprocess.run(
            [PREFECT, *argv], env=env, capture_output=True, text=True, timeout=120
        )

    pool = f"cli-{uuid4().hex[:6]}"
    created = prefect(
        "work-pool", "create", pool, "--type", "process", PREFECT_API_KEY=tokens[Role.ADMIN]
    )
    listed = prefect("work-pool", "ls", PREFECT_API_AUTH_STRING=f"me:{tokens[Role.VIEWER]}")
    refused = prefect("work-pool", "delete", pool, PREFECT_API_KEY=tokens[Role.VIEWER])
    assert created.returncode == 0, created.stderr
    assert listed.returncode == 0, listed.stderr
    assert pool in listed.stdout
    assert refused.returncode != 0
    assert "403" in refused.stdout + refused.stderr


def test_tokens_are_created_listed_rotated_and_revoked_from_the_cli(
    guarded: GuardedServer, api: httpx.Client, scratch_dir: Path
) -> None:
    env = {**os.environ, "AIORCH_GATEWAY_STORE_URL": guarded.store_url}

    def aiorch(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [AIORCH, "auth", "token", *argv], env=env, capture_output=True, text=True, timeout=60
        )

    name = f"cli-{uuid4().hex[:6]}"
    created = aiorch("create", "--role", "viewer", "--expires", "30d", "--name", name)
    token = created.stdout.strip()
    assert created.returncode == 0, created.stderr
    assert "shown this once" in created.stderr
    assert api.post("/flows/filter", json={}, headers=bearer(token)).status_code == 200
    listed = aiorch("list")
    assert name in listed.stdout
    assert token not in listed.stdout
    assert token.split("_", 2)[2] not in listed.stdout
    rotated = aiorch("rotate", name, "--grace", "1h")
    successor = rotated.stdout.strip()
    assert rotated.returncode == 0, rotated.stderr
    assert api.post("/flows/filter", json={}, headers=bearer(token)).status_code == 200  # grace
    assert api.post("/flows/filter", json={}, headers=bearer(successor)).status_code == 200
    revoked = aiorch("revoke", name)
    assert revoked.returncode == 0, revoked.stderr
    # The gateway reads a token's row again within a second (ROW_SECONDS).
    deadline = time.monotonic() + 10
    while api.post("/flows/filter", json={}, headers=bearer(successor)).status_code != 401:
        assert time.monotonic() < deadline, "the revoked token still works"
        time.sleep(0.1)
    bad = aiorch("create", "--role", "viewer", "--expires", "soon")
    assert bad.returncode == 2
    assert "--expires: 'soon' is not a duration" in bad.stderr


def test_the_ui_settings_send_the_browser_to_the_gateway_and_its_login(
    guarded: GuardedServer,
) -> None:
    settings = httpx.get(f"{guarded.url}/ui-settings").json()
    assert settings["auth"] == "BASIC"
    assert settings["api_url"] == guarded.api_url
    page = httpx.get(f"{guarded.url}/v2/")
    assert page.status_code == 200
    assert "<html" in page.text.lower()


def test_the_ui_login_check_passes_with_the_token_as_the_password(
    guarded: GuardedServer, tokens: dict[Role, str]
) -> None:
    # What the V2 UI's login page sends: Basic with the typed text, checked on /admin/version.
    typed = base64.b64encode(tokens[Role.VIEWER].encode()).decode()
    answer = httpx.get(
        f"{guarded.api_url}/admin/version", headers={"Authorization": f"Basic {typed}"}
    )
    assert answer.status_code == 200


def test_no_token_reaches_the_logs_the_events_or_the_databases(
    guarded: GuardedServer, api: httpx.Client, tokens: dict[Role, str]
) -> None:
    canary = issue(guarded, Role.VIEWER)
    forged_canary = canary[:-6] + "CANARY"
    api.post("/flows/", json={"name": "canary"}, headers=bearer(canary))  # denied, audited
    api.post("/flows/filter", json={}, headers=bearer(forged_canary))  # failed, audited
    events = poll_events(
        guarded.api_url,
        None,
        count=1,
        names=["aiorch.gateway.denied"],
        headers=bearer(tokens[Role.VIEWER]),
    )
    places = {
        "gateway log": guarded.log.read_bytes(),
        "audit events": str(events).encode(),
        "token store": Path(guarded.store_url.removeprefix("sqlite:///")).read_bytes(),
        "prefect database": b"".join(
            path.read_bytes() for path in guarded.upstream_home.glob("prefect.db*")
        ),
    }
    secrets = [token.split("_", 2)[2] for token in [canary, forged_canary, *tokens.values()]]
    leaks = [
        (place, n)
        for place, data in places.items()
        for n, s in enumerate(secrets)
        if s.encode() in data
    ]
    assert events
    assert all(len(data) > 0 for data in places.values())
    assert leaks == []


def test_tokens_live_in_postgresql_when_configured(postgres_url: str) -> None:
    store = TokenStore(postgres_url)
    issued = store.create(f"pg-{uuid4().hex[:6]}", Role.AUTHOR, expires_in=timedelta(days=1))
    token = issued.token.get_secret_value()
    assert store.verify(token).role == Role.AUTHOR
    # Another gateway on the same database sees the token, and then its revocation.
    other = TokenStore(postgres_url)
    assert other.verify(token).name == issued.record.name
    store.revoke(issued.record.id)
    with pytest.raises(AuthenticationFailed) as failed:
        TokenStore(postgres_url).verify(token)
    assert failed.value.reason == "revoked"


def test_paths_with_dot_or_empty_segments_are_refused_before_anything(
    guarded: GuardedServer,
) -> None:
    import http.client

    host, port = guarded.url.removeprefix("http://").split(":")
    answers = {}
    for path in [
        "/x/../api/flows/filter",
        "/%2e%2e/api/flows/filter",
        "/api/./flows/filter",
        "//api/flows/filter",
        "/api//flows/filter",
    ]:
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.request("POST", path, body="{}", headers={"content-type": "application/json"})
        answers[path] = connection.getresponse().status
        connection.close()
    assert answers == dict.fromkeys(answers, 400)
    assert httpx.get(f"{guarded.url}/v2/").status_code == 200
