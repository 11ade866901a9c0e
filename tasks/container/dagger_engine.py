"""A block holding how aiorch reaches a Dagger engine.

Example:
    ```python
    from aiorch.tasks.container.dagger_engine import DaggerEngine

    DaggerEngine(cli_path="/usr/local/bin/dagger", session_timeout_seconds=120).save(
        "ci-engine", overwrite=True
    )
    ```
"""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field

from aiorch.core.blocks import StrictFields


class DaggerEngine(StrictFields, Block):
    """Where the Dagger CLI is and which engine it talks to.

    The dagger runner starts ``dagger session`` with this CLI itself, with a timeout,
    because the SDK's own provisioning cannot be cancelled.
    """

    _block_type_name = "aiorch Dagger Engine"
    _block_type_slug = "aiorch-dagger-engine"
    _description = "The Dagger CLI and engine that aiorch's dagger runner uses for container steps."

    cli_path: str = Field(
        default="dagger",
        min_length=1,
        description="The dagger CLI: a name looked up on PATH or an absolute path.",
    )
    runner_host: str | None = Field(
        default=None,
        description=(
            "Engine to connect to, as _EXPERIMENTAL_DAGGER_RUNNER_HOST, e.g. "
            "tcp://dagger-engine:1234 or docker-container://dagger-engine. "
            "Empty: the CLI's default."
        ),
    )
    session_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How long starting a session may take before the step fails as retryable.",
    )
    request_timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Timeout of each GraphQL request to the engine; empty for none.",
    )
