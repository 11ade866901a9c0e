"""The gateway's cost: API calls and a 200-task flow through it, against the bare server.

One Prefect server locked with its own auth string, and ``aiorch gateway`` in front of
it. The baseline calls the server directly with that auth string; the candidate calls
through the gateway with an operator token (authentication, the route table and the
forwarding all included). Rounds alternate between the two.

- Per API call: ``CALLS`` requests of ``POST /flow_runs/filter`` on one kept-alive
  connection per side; the sample is the mean per call, and every call's latency feeds
  the p50 and p99 below the table.
- A flow of ``TASKS`` trivial tasks (``bench.backends``' load, in a new interpreter):
  task runs recorded per second, the flow's events and logs going through the gateway too.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path

import httpx

from aiorch.gateway.roles import Role
from aiorch.gateway.tokens import TokenStore
from aiorch.testing.gateway import guarded_server
from bench.backends import task_runs_per_second
from bench.harness import Comparison, Row, Section, Side, interleave

CALLS = 100
TASKS = 200
EXTRA_ALLOWED_SECONDS = 0.002
EXTRA_ALLOWED_SHARE = 0.10


def _calls(client: httpx.Client, latencies: list[float]) -> Callable[[], float]:
    def sample() -> float:
        started = time.perf_counter()
        for _ in range(CALLS):
            sent = time.perf_counter()
            client.post("/flow_runs/filter", json={"limit": 1}).raise_for_status()
            latencies.append(time.perf_counter() - sent)
        return (time.perf_counter() - started) / CALLS

    return sample


def _percentiles(latencies: list[float]) -> str:
    cuts = statistics.quantiles(latencies, n=100)
    return f"p50 {cuts[49] * 1000:.2f} ms, p99 {cuts[98] * 1000:.2f} ms"


def run(repeat: int) -> list[Row]:
    """The bare server against the gateway, interleaved."""
    rows: list[Row] = []
    with (
        tempfile.TemporaryDirectory(prefix="aiorch-bench-gateway-") as home,
        guarded_server(Path(home)) as guarded,
    ):
        token = TokenStore(guarded.store_url).create(
            "bench", Role.OPERATOR, expires_in=timedelta(hours=2)
        )
        secret = token.token.get_secret_value()
        user, password = guarded.upstream_auth_string.split(":", 1)
        bare_latencies: list[float] = []
        gated_latencies: list[float] = []
        with (
            httpx.Client(base_url=guarded.upstream_api_url, auth=(user, password)) as bare,
            httpx.Client(
                base_url=guarded.api_url, headers={"Authorization": f"Bearer {secret}"}
            ) as gated,
        ):
            direct, through = interleave(
                _calls(bare, bare_latencies), _calls(gated, gated_latencies), repeat
            )
        call = Comparison(
            benchmark="Gateway: one API call (POST /flow_runs/filter)",
            baseline=Side(label="bare Prefect server", samples=direct),
            candidate=Side(label="through aiorch gateway", samples=through),
            target="extra <= max(10 %, 2 ms)",
        )
        allowed = max(EXTRA_ALLOWED_SHARE * call.baseline.median, EXTRA_ALLOWED_SECONDS)
        rows.append(
            call.model_copy(
                update={
                    "met": call.extra <= allowed,
                    "note": f"extra {call.extra * 1000:.2f} ms per call (allowed "
                    f"{allowed * 1000:.1f} ms); bare {_percentiles(bare_latencies)}, "
                    f"gateway {_percentiles(gated_latencies)}",
                }
            )
        )
        bare_flow, gated_flow = interleave(
            partial(
                task_runs_per_second,
                guarded.upstream_api_url,
                1,
                TASKS,
                guarded.upstream_auth_string,
            ),
            partial(task_runs_per_second, guarded.api_url, 1, TASKS, f"bench:{secret}"),
            max(2, repeat // 3),
        )
        flow = Comparison(
            benchmark=f"Gateway: a flow of {TASKS} tasks",
            baseline=Side(label="bare Prefect server", samples=bare_flow),
            candidate=Side(label="through aiorch gateway", samples=gated_flow),
            unit="per s",
            target="ratio >= 0.9",
        )
        rows.append(
            flow.model_copy(
                update={
                    "met": flow.ratio >= 1 - EXTRA_ALLOWED_SHARE,
                    "note": "task runs recorded per second; the flow's task runs, logs and "
                    "events all go through the gateway",
                }
            )
        )
        rows.append(
            Section(
                title="Gateway: latency per API call",
                markdown=(
                    f"- bare Prefect server: {_percentiles(bare_latencies)}\n"
                    f"- through aiorch gateway: {_percentiles(gated_latencies)}"
                ),
            )
        )
    return rows
