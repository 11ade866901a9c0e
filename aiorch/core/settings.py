"""The single place where aiorch reads its configuration.

Every setting comes from an ``AIORCH_``-prefixed environment variable (or a ``.env``
file in the working directory) and is documented in ``docs/configuration.md``.
Prefect's own settings (``PREFECT_HOME``, ``PREFECT_API_URL``, ...) stay Prefect's: aiorch
never re-reads them under another name.

Example:
    ```python
    from aiorch.core.settings import load_settings

    settings = load_settings()
    print(settings.ui_port)
    ```
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aiorch.core.errors import ConfigurationError

__all__ = ["AiorchSettings", "ConfigurationError", "load_settings"]

ENV_PREFIX = "AIORCH_"


class AiorchSettings(BaseSettings):
    """aiorch's settings. Field descriptions are the documentation users see."""

    model_config = SettingsConfigDict(
        hide_input_in_errors=True,
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    environment: str = Field(
        default="dev",
        min_length=1,
        description=(
            "Name of the environment this process runs in (dev, staging, prod); the work "
            "pools of `deployments/environments/*.yaml` set it, run reports show it."
        ),
    )
    ui_host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description=(
            "Host the local Prefect server aiorch's commands share binds its API and UI to "
            "(when no PREFECT_API_URL is set)."
        ),
    )
    ui_port: int = Field(
        default=4200,
        ge=1,
        le=65535,
        description=(
            "Preferred port of that server (a free one is used when it is taken); it is "
            "passed as both `--port` and `PREFECT_SERVER_API_PORT`."
        ),
    )
    local_server_idle_seconds: float = Field(
        default=600.0,
        gt=0,
        description=(
            "The local Prefect server aiorch's commands share (when no PREFECT_API_URL is "
            "set) stops after this long without flow-run activity."
        ),
    )
    data_dir: Path = Field(
        default=Path("~/.cache/aiorch"),
        description=(
            "Where aiorch keeps machine-local state: the local runner's cache volumes and "
            "the lock files that make identical concurrent steps run once."
        ),
    )
    output_dir: Path = Field(
        default=Path("aiorch-outputs"),
        description=(
            "Where container steps export their outputs when the caller names no place: "
            "`<output_dir>/<step name>/`, relative to the working directory."
        ),
    )
    backup_dir: Path = Field(
        default=Path("~/aiorch-backups"),
        description=(
            "Where `aiorch backup create` and the backup flow write backups (one "
            "directory each, with a manifest of checksums). Put it on another disk or "
            "mount than the databases it saves."
        ),
    )
    max_parallel_steps: int = Field(
        default=4,
        ge=1,
        description=(
            "How many container steps one process runs at once; more wait their turn. "
            "Flows can also bound their task runner."
        ),
    )
    log_tail_lines: int = Field(
        default=50,
        ge=1,
        description="Lines of stdout and of stderr kept in a step's result and error.",
    )
    docker_pull: Literal["never", "missing", "always"] = Field(
        default="missing",
        description=(
            "When the docker runner pulls images: `missing` pulls what the engine lacks, "
            "`never` uses only local images, `always` pulls before each step."
        ),
    )

    local_model_url: AnyHttpUrl | None = Field(
        default=None,
        description=(
            "OpenAI-compatible base URL of a local model server that is already running "
            "(`aiorch model serve`, e.g. http://model:8080/v1 in the compose stack): the "
            "`local` provider uses it instead of starting one on this machine."
        ),
    )
    local_model_context_tokens: int = Field(
        default=4096,
        ge=256,
        description=(
            "Context window the bundled local model is served with (llama.cpp's n_ctx); "
            "history policies use it as the model's window."
        ),
    )
    local_model_threads: int = Field(
        default=2,
        ge=1,
        description="CPU threads the bundled local model server uses.",
    )
    local_model_idle_seconds: float = Field(
        default=10.0,
        gt=0,
        description=(
            "The machine's shared local model server stops once no process using it has "
            "been alive for this long."
        ),
    )
    local_model_startup_seconds: float = Field(
        default=120.0,
        gt=0,
        description="How long aiorch waits for the local model server to answer its health check.",
    )

    breaker_store_url: SecretStr | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the database circuit breakers share, e.g. "
            "postgresql+psycopg://user:password@host/aiorch (the `postgres` extra); "
            "empty: an SQLite file in the data directory (one machine). A secret: "
            "never printed."
        ),
    )

    message_broker_url: SecretStr | None = Field(
        default=None,
        description=(
            "AMQP URL of the RabbitMQ broker the message bus uses, e.g. "
            "amqp://user:password@host:5672/vhost (the `rabbitmq` extra); empty: the "
            "embedded bus, an SQLite file in the data directory (one machine). A secret: "
            "never printed."
        ),
    )

    fingerprint_key: SecretStr | None = Field(
        default=None,
        description=(
            "Key of the keyed hashes that stand for secret values in step cache keys (so a "
            "changed secret is a cache miss, and a key reveals nothing of the value). "
            "Empty: a random key made once in the data directory. Set the same value on "
            "every machine that shares a result store. A secret: never printed."
        ),
    )

    gateway_upstream_url: str = Field(
        default="http://127.0.0.1:4200",
        pattern=r"^https?://[^/]+(/.*)?$",
        description=(
            "The Prefect server `aiorch gateway` stands in front of (its URL without /api); "
            "bind that server where only the gateway reaches it."
        ),
    )
    gateway_upstream_auth_string: SecretStr | None = Field(
        default=None,
        description=(
            "The Prefect server's PREFECT_SERVER_API_AUTH_STRING: the gateway sends it in "
            "place of the caller's token, so the server accepts the gateway alone. A "
            "secret: never printed."
        ),
    )
    gateway_host: str = Field(
        default="127.0.0.1", min_length=1, description="Address `aiorch gateway` listens on."
    )
    gateway_port: int = Field(
        default=4280, ge=1, le=65535, description="Port `aiorch gateway` listens on."
    )
    gateway_store_url: SecretStr | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the database of gateway tokens (their hashes, roles and "
            "expiry), e.g. postgresql+psycopg://user:password@host/aiorch for several "
            "gateways; empty: an SQLite file in the data directory. A secret: never printed."
        ),
    )
    gateway_max_failures: int = Field(
        default=10,
        ge=1,
        description=(
            "Failed sign-ins a client may make within the window before the gateway "
            "answers it 429 with Retry-After."
        ),
    )
    gateway_failure_window_seconds: float = Field(
        default=60.0, gt=0, description="The window failed sign-ins are counted in."
    )

    @field_validator("breaker_store_url", "gateway_store_url")
    @classmethod
    def _store_url_parses(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked here, not at the first model request, with SQLAlchemy's own parser;
        # its message would quote the URL (and its password), so it is not passed on.
        if value is None:
            return None
        from sqlalchemy.engine import make_url  # only when set: it is a heavy import
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(value.get_secret_value())
        except ArgumentError:
            raise ValueError(
                "not an SQLAlchemy database URL; write it as "
                "postgresql+psycopg://user:password@host:5432/aiorch or "
                "sqlite:////var/lib/aiorch/breakers.db"
            ) from None
        return value

    @field_validator("message_broker_url")
    @classmethod
    def _broker_url_is_amqp(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        scheme = value.get_secret_value().partition("://")[0]
        if scheme not in {"amqp", "amqps"}:
            raise ValueError(
                "not an AMQP URL; write it as amqp://user:password@host:5672/vhost "
                "(amqps:// for TLS)"
            )
        return value

    def database_url(self, configured: SecretStr | None, filename: str) -> str:
        """``configured`` (a database URL setting), else an SQLite file in the data directory."""
        if configured is not None:
            return configured.get_secret_value()
        return f"sqlite:///{self.resolved_data_dir() / filename}"

    def resolved_data_dir(self) -> Path:
        """``data_dir`` with ``~`` expanded, created if missing."""
        path = self.data_dir.expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path


def _explain(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"])
        variable = f"{ENV_PREFIX}{field.upper()}"
        lines.append(
            f"{variable}: {item['msg']}. "
            f"Fix the value of {variable} or unset it to use the default; "
            "see docs/configuration.md."
        )
    return "invalid aiorch settings:\n  " + "\n  ".join(lines)


_last: tuple[object, AiorchSettings] | None = None


def _sources_fingerprint() -> object:
    """What the settings are read from: AIORCH_ variables and the working .env file."""
    variables = sorted(
        (name.upper(), value)
        for name, value in os.environ.items()
        if name.upper().startswith(ENV_PREFIX)
    )
    try:
        # The content, not the mtime: two writes within one clock tick share an mtime.
        dotenv: bytes | None = Path(".env").read_bytes()
    except OSError:
        dotenv = None
    return (tuple(variables), dotenv)


def load_settings() -> AiorchSettings:
    """Read the settings from the environment.

    Settings are read again only when an ``AIORCH_`` variable or the ``.env`` file
    changed: every step and model request reads them, and pydantic-settings takes about a
    millisecond to build them.

    The input values are left out of error messages on purpose: a mistyped variable may
    hold a secret.

    Raises:
        ConfigurationError: a variable has an invalid value; the message names the
            variable and how to fix it.
    """
    global _last
    fingerprint = _sources_fingerprint()
    last = _last
    if last is not None and last[0] == fingerprint:
        return last[1]
    try:
        settings = AiorchSettings()
    except ValidationError as error:
        raise ConfigurationError(_explain(error)) from None
    _last = (fingerprint, settings)
    return settings
