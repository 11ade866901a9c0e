"""Environments (dev, staging, prod) as configuration: pools, variables and blocks.

Every environment runs the same ``prefect.yaml``; what differs is written in
``deployments/environments/<name>.yaml`` and applied to the server of the active Prefect
profile by ``aiorch environment apply <name>``:

- ``work_pools``: each pool's type, concurrency limit and job-variable defaults (image,
  pull policy, env, volumes...). Deployments leave them unset, so a deployment runs with
  the defaults of the environment's pool.
- ``variables``: Prefect variables flows and automations read.
- ``blocks``: the model providers, agents and secrets the deployments name. API keys and
  secret values are never in the file: it names the environment variable to read them
  from when applying.
- ``profile``: the Prefect profile this environment's server is configured in; applying
  under another profile is refused, so prod settings never land on a dev server.
- ``promotes_to``: the environment after this one; ``aiorch promote`` deploys there only
  when an evaluation passed its gate (:mod:`aiorch.deploy.promotion`).

Applying is idempotent: pools are created or updated in place, blocks and variables
overwritten.

Example:
    ```python
    from aiorch.deploy.environments import load_environment

    dev = load_environment("dev")
    print(sorted(dev.work_pools))
    ```
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.context import get_settings_context
from prefect.exceptions import ObjectNotFound
from prefect.settings import load_profiles
from prefect.variables import Variable
from prefect.workers.utilities import get_default_base_job_template_for_infrastructure_type
from pydantic import ConfigDict, Field, SecretStr, ValidationError

from aiorch.agent_blocks import Agent, ModelProvider
from aiorch.core.errors import ConfigurationError, validation_problems
from aiorch.core.models import AiorchModel
from aiorch.tasks.blocks import aload_block

ENVIRONMENTS_DIR = Path("deployments/environments")
EXAMPLE_FILE = ENVIRONMENTS_DIR / "dev.yaml"


class _Strict(AiorchModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkPoolSpec(_Strict):
    """One work pool of an environment."""

    type: Literal["process", "docker"] = Field(
        description="Worker type: `process` (prefect) or `docker` (prefect-docker)."
    )
    description: str | None = Field(default=None, description="Shown in the Prefect UI.")
    concurrency_limit: int | None = Field(
        default=None, ge=0, description="Most flow runs the pool runs at once (none: no limit)."
    )
    job_variables: dict[str, Any] = Field(
        default_factory=dict,
        description="Defaults of the pool's job variables (see `prefect work-pool "
        "get-default-base-job-template --type TYPE`); deployments may still override them.",
    )


class ProviderSpec(_Strict):
    """A ModelProvider block; any ModelProvider field except ``api_key`` may be set."""

    model_config = ConfigDict(extra="allow", frozen=True)

    api_key_env: str | None = Field(
        default=None,
        description="Environment variable holding the API key when applying (never the key).",
    )


class AgentSpec(_Strict):
    """An Agent block; any Agent field may be set, ``provider`` names a provider block."""

    model_config = ConfigDict(extra="allow", frozen=True)

    provider: str | None = Field(default=None, description="Name of a ModelProvider block.")


class SecretSpec(_Strict):
    """A Secret block whose value is read from an environment variable when applying."""

    from_env: str = Field(min_length=1, description="Environment variable holding the value.")


class BlockSpecs(_Strict):
    """Blocks an environment's deployments name."""

    providers: dict[str, ProviderSpec] = Field(default_factory=dict)
    secrets: dict[str, SecretSpec] = Field(default_factory=dict)
    agents: dict[str, AgentSpec] = Field(default_factory=dict)


class Environment(_Strict):
    """What one environment's Prefect server needs beside ``prefect.yaml``."""

    name: str = Field(min_length=1, description="dev, staging, prod...")
    description: str = ""
    profile: str | None = Field(
        default=None,
        description="Prefect profile that must be active when applying (none: any).",
    )
    promotes_to: str | None = Field(
        default=None,
        description="The next environment (a file beside this one) `aiorch promote` deploys "
        "to once an evaluation passes (none: the last one).",
    )
    work_pools: dict[str, WorkPoolSpec] = Field(default_factory=dict)
    variables: dict[str, Any] = Field(default_factory=dict)
    blocks: BlockSpecs = Field(default_factory=BlockSpecs)

    def require_active_profile(self, command: str) -> None:
        """Refuse to act on this environment under another Prefect profile.

        Args:
            command: The command to run again under the right profile, for the message.

        Raises:
            ConfigurationError: another profile is active (naming the one to use).
        """
        active = get_settings_context().profile.name
        if self.profile and self.profile != active:
            raise ConfigurationError(
                f"environment {self.name!r} belongs to Prefect profile {self.profile!r} but "
                f"{active!r} is active: run `PREFECT_PROFILE={self.profile} {command}` "
                "(create the profile first, see docs/deployment.md)"
            )

    def require_profile_exists(self) -> None:
        """Refuse to reach this environment through a profile this machine lacks.

        Raises:
            ConfigurationError: the profile does not exist (naming how to create it).
        """
        if self.profile and self.profile not in load_profiles().names:
            raise ConfigurationError(
                f"environment {self.name!r} deploys through Prefect profile {self.profile!r}, "
                f"which does not exist here: create it with `prefect profile create "
                f"{self.profile}` and `prefect --profile {self.profile} config set "
                "PREFECT_API_URL=...` (see docs/deployment.md)"
            )


def environment_file(name: str, directory: Path = ENVIRONMENTS_DIR) -> Path:
    """Where environment ``name`` is described."""
    return directory / f"{name}.yaml"


def environment_path(name_or_path: str | Path, directory: Path = ENVIRONMENTS_DIR) -> Path:
    """The file of an environment given by name (``dev``, in ``directory``) or by path."""
    path = Path(name_or_path)
    return path if path.suffix in {".yaml", ".yml"} else environment_file(str(path), directory)


def load_environment(name_or_path: str | Path, directory: Path = ENVIRONMENTS_DIR) -> Environment:
    """Read and validate an environment by name (``dev``) or by file path.

    Raises:
        ConfigurationError: the file is missing or invalid (naming the field and file).
    """
    path = environment_path(name_or_path, directory)
    if not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.yaml"))
        raise ConfigurationError(
            f"no environment file {path}: environments here are {known}; copy "
            f"{EXAMPLE_FILE} to start a new one"
        )
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        return Environment.model_validate(raw)
    except yaml.YAMLError as error:
        raise ConfigurationError(f"{path} is not valid YAML: {error}") from None
    except ValidationError as error:
        raise ConfigurationError(f"{path}: {validation_problems(error, 'environment')}") from None


def env_value(variable: str, where: str) -> str:
    """The value of environment variable ``variable``, which ``where`` (a field) names."""
    value = os.environ.get(variable)
    if not value:
        raise ConfigurationError(
            f"{where} reads environment variable {variable}, which is not set: export it "
            "in the shell that runs this command"
        )
    return value


def _invalid(where: str, error: ValidationError) -> ConfigurationError:
    return ConfigurationError(f"{where}: {validation_problems(error, where)}")


def provider_block(name: str, spec: ProviderSpec) -> ModelProvider:
    """The ModelProvider block ``spec`` describes, with its API key read from the env."""
    fields = dict(spec.model_extra or {})
    if "api_key" in fields:
        raise ConfigurationError(
            f"blocks.providers.{name}.api_key: never write keys in environment files; "
            "set api_key_env to the environment variable that holds it"
        )
    if spec.api_key_env:
        where = f"blocks.providers.{name}.api_key_env"
        fields["api_key"] = SecretStr(env_value(spec.api_key_env, where))
    try:
        return ModelProvider.model_validate(fields)
    except ValidationError as error:
        raise _invalid(f"blocks.providers.{name}", error) from None


async def agent_block(
    name: str, spec: AgentSpec, providers: dict[str, ModelProvider] | None = None
) -> Agent:
    """The Agent block ``spec`` describes; its provider from ``providers`` or the server."""
    fields = dict(spec.model_extra or {})
    if spec.provider:
        known = (providers or {}).get(spec.provider)
        fields["provider"] = known or await aload_block(ModelProvider, spec.provider)
    try:
        return Agent.model_validate(fields)
    except ValidationError as error:
        raise _invalid(f"blocks.agents.{name}", error) from None


async def base_job_template(pool: str, spec: WorkPoolSpec) -> dict[str, Any]:
    """The worker type's default job template with ``spec``'s job variables as defaults."""
    template = await get_default_base_job_template_for_infrastructure_type(spec.type)
    if template is None:
        raise ConfigurationError(
            f"work_pools.{pool}.type: no {spec.type} worker is installed here "
            "(the docker type comes with prefect-docker)"
        )
    properties: dict[str, dict[str, Any]] = template["variables"]["properties"]
    unknown = sorted(set(spec.job_variables) - set(properties))
    if unknown:
        raise ConfigurationError(
            f"work_pools.{pool}.job_variables: {unknown} are not {spec.type} job "
            f"variables; use some of {sorted(properties)}"
        )
    for key, value in spec.job_variables.items():
        properties[key]["default"] = value
    return template


async def apply_environment(environment: Environment) -> list[str]:
    """Create or update the environment's pools, variables and blocks; say what was done.

    Raises:
        ConfigurationError: wrong profile, unknown job variables, a missing environment
            variable, or an invalid block (each naming the field and the fix).
    """
    environment.require_active_profile(f"aiorch environment apply {environment.name}")
    templates = {
        name: await base_job_template(name, spec) for name, spec in environment.work_pools.items()
    }
    providers = {
        name: provider_block(name, spec) for name, spec in environment.blocks.providers.items()
    }
    secrets = {
        name: env_value(spec.from_env, f"blocks.secrets.{name}.from_env")
        for name, spec in environment.blocks.secrets.items()
    }
    # Everything is read and validated before the first write, so a mistake leaves the
    # server as it was instead of half configured.
    agents = {
        name: await agent_block(name, spec, providers)
        for name, spec in environment.blocks.agents.items()
    }
    done: list[str] = []
    async with get_client() as client:
        for name, spec in environment.work_pools.items():
            update = WorkPoolUpdate(
                description=spec.description,
                base_job_template=templates[name],
                concurrency_limit=spec.concurrency_limit,
            )
            try:
                await client.read_work_pool(name)
                await client.update_work_pool(name, update)
                done.append(f"work pool {name} ({spec.type}) updated")
            except ObjectNotFound:
                await client.create_work_pool(
                    WorkPoolCreate(
                        name=name,
                        type=spec.type,
                        description=spec.description,
                        base_job_template=templates[name],
                        concurrency_limit=spec.concurrency_limit,
                    )
                )
                done.append(f"work pool {name} ({spec.type}) created")
    for name, value in environment.variables.items():
        await Variable.aset(name, value, overwrite=True)
        done.append(f"variable {name} set")
    for name, provider in providers.items():
        await provider.asave(name, overwrite=True)
        done.append(f"block aiorch-model-provider/{name} saved")
    for name, value in secrets.items():
        await Secret(value=SecretStr(value)).asave(name, overwrite=True)
        done.append(f"block secret/{name} saved")
    for name, agent in agents.items():
        await agent.asave(name, overwrite=True)
        done.append(f"block aiorch-agent/{name} saved")
    return done
