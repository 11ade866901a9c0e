"""The dagger-io SDK reaches an engine over real HTTP in this environment.

gql 4.4 with httpx2 installed (fast-agent's dependencies bring it) rejects the URL the
Dagger SDK passes, so every real connection fails with "Invalid type for url". The
project bounds gql below 4.4; this test connects the real SDK through a real socket.
"""

from __future__ import annotations

from importlib import metadata

import anyio
import dagger
import pytest
from dagger import dag
from packaging.version import Version

from tests.doubles.dagger_engine import engine_double

SDL = "type Query { version: String! }"


def test_httpx2_is_installed_next_to_dagger() -> None:
    # The incompatibility only bites when httpx2 is present; if fast-agent stops pulling
    # it in, the gql bound in pyproject.toml may be relaxed.
    assert metadata.version("httpx2")
    assert Version(metadata.version("gql")) < Version("4.4")


def test_sdk_connects_and_queries_over_http(monkeypatch: pytest.MonkeyPatch) -> None:
    with engine_double(SDL, {"version": "v0.21.8"}, session_token="canary-token") as engine:
        monkeypatch.setenv("DAGGER_SESSION_PORT", str(engine.port))
        monkeypatch.setenv("DAGGER_SESSION_TOKEN", engine.session_token)

        async def ask_version() -> str:
            async with dagger.connection(dagger.Config(retry=None)):
                return await dag.version()

        assert anyio.run(ask_version) == "v0.21.8"
    assert engine.rejected_auth == 0
    assert any("__schema" in query for query in engine.queries), "SDK skipped introspection"
    assert any("version" in query and "__schema" not in query for query in engine.queries)


def test_sdk_reports_a_wrong_token_as_a_connection_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with engine_double(SDL, {"version": "v0.21.8"}, session_token="right") as engine:
        monkeypatch.setenv("DAGGER_SESSION_PORT", str(engine.port))
        monkeypatch.setenv("DAGGER_SESSION_TOKEN", "wrong")

        async def ask_version() -> str:
            async with dagger.connection(dagger.Config(retry=None)):
                return await dag.version()

        with pytest.raises(dagger.ClientConnectionError):
            anyio.run(ask_version)
    assert engine.rejected_auth >= 1
