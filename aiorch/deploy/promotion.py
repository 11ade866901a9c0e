"""Promotion: a deployment moves to the next environment only when its evaluation passed.

``aiorch promote DEPLOYMENT --from dev --evaluation RUN`` reads the verdict of the
evaluation ``RUN`` on dev's server (the event every evaluation emits, see
:mod:`aiorch.tasks.evaluation.verdicts`; or the JSON file ``aiorch eval run --output``
wrote), and refuses unless the gate passed and asked something of the scores: a
``--min-score`` or a ``--baseline``. A gate that asks nothing passes everything, and
promoting on it would be a formality. Then it deploys DEPLOYMENT, as ``prefect.yaml``
defines it, to the environment dev ``promotes_to`` (staging): ``prefect deploy --name
DEPLOYMENT`` under the target's Prefect profile, so the deployment lands on the
target's server and runs on its pools, blocks and model.

Example:
    ```python
    from aiorch.deploy.promotion import environments_of_promotion

    source, target = environments_of_promotion("dev")
    print(f"{source.name} -> {target.name}")  # dev -> staging
    ```
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from prefect.settings import get_current_settings
from pydantic import ConfigDict

from aiorch.core.errors import ConfigurationError, DeployFailed, PromotionRefused
from aiorch.core.guardian import Guardian
from aiorch.core.models import AiorchModel
from aiorch.deploy.environments import (
    ENVIRONMENTS_DIR,
    Environment,
    environment_path,
    load_environment,
)
from aiorch.tasks.evaluation.verdicts import GateRecord, aread_gate

PREFECT_FILE = Path("prefect.yaml")
# Settings that would point `prefect deploy` at the source's server whatever the
# target's profile says: environment variables win over a profile.
CONNECTION_SETTINGS = ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_API_AUTH_STRING")


class Promotion(AiorchModel):
    """A promotion the evaluation allowed: what goes where, and on whose word."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    deployment: str
    source: str
    target: str
    target_profile: str | None
    evaluation: str
    record: GateRecord


def environments_of_promotion(
    source: str | Path, directory: Path = ENVIRONMENTS_DIR
) -> tuple[Environment, Environment]:
    """The environment ``source`` names and the one it promotes to (in the same folder).

    Raises:
        ConfigurationError: either file is missing or invalid, or ``source`` is the last.
    """
    path = environment_path(source, directory)
    origin = load_environment(path)
    if origin.promotes_to is None:
        raise ConfigurationError(
            f"environment {origin.name!r} promotes to nothing (promotes_to is not set in "
            f"{path}): it is the last environment; promote from an earlier one"
        )
    return origin, load_environment(origin.promotes_to, path.parent)


def deployment_names(prefect_file: Path) -> list[str]:
    """The deployments ``prefect_file`` defines.

    Raises:
        ConfigurationError: the file is missing or not a ``prefect.yaml``.
    """
    if not prefect_file.is_file():
        raise ConfigurationError(
            f"no {prefect_file} here: run `aiorch promote` from the project's folder, or "
            "pass --prefect-file"
        )
    try:
        loaded = yaml.safe_load(prefect_file.read_text()) or {}
        return [str(d["name"]) for d in loaded.get("deployments") or []]
    except (yaml.YAMLError, AttributeError, KeyError, TypeError) as error:
        raise ConfigurationError(
            f"{prefect_file} is not a prefect.yaml with named deployments: {error}"
        ) from None


def check_may_promote(record: GateRecord, evaluation: str) -> None:
    """Refuse unless the evaluation passed a gate that asked something of the scores.

    Raises:
        PromotionRefused: the gate failed, or held the agents to nothing.
    """
    where = f"evaluation {evaluation} ({record.evaluation} of {', '.join(record.agents)})"
    if not record.verdict.passed:
        raise PromotionRefused(
            f"{where} failed its gate (exit code {record.verdict.exit_code}): "
            f"{'; '.join(record.verdict.failures)}; fix the agent, evaluate again, and "
            "promote on the new run"
        )
    if not record.gated:
        raise PromotionRefused(
            f"{where} passed a gate that asked nothing of its scores (no --min-score, no "
            "--baseline): evaluate again with --min-score or --baseline, and promote on "
            "that run"
        )


async def aplan_promotion(
    deployment: str,
    *,
    source: str | Path,
    evaluation: str,
    prefect_file: Path = PREFECT_FILE,
    directory: Path = ENVIRONMENTS_DIR,
) -> Promotion:
    """Check everything a promotion needs, the evaluation's verdict last.

    Args:
        deployment: A deployment's name in ``prefect_file``.
        source: The environment it is promoted from (a name, or an environment file).
        evaluation: The evaluation run's id on the source's server, or its --output file.
        prefect_file: The ``prefect.yaml`` that defines the deployment.
        directory: Where environments given by name are.

    Raises:
        ConfigurationError: bad input (environments, profiles, deployment, evaluation).
        PromotionRefused: the evaluation does not allow it.
    """
    known = deployment_names(prefect_file)
    if deployment not in known:
        raise ConfigurationError(
            f"deployment: {prefect_file} defines no deployment {deployment!r}; it defines {known}"
        )
    origin, target = environments_of_promotion(source, directory)
    origin.require_active_profile(
        f"aiorch promote {deployment} --from {source} --evaluation {evaluation}"
    )
    target.require_profile_exists()
    record = await aread_gate(evaluation)
    check_may_promote(record, evaluation)
    return Promotion(
        deployment=deployment,
        source=origin.name,
        target=target.name,
        target_profile=target.profile,
        evaluation=evaluation,
        record=record,
    )


def target_process_environment(promotion: Promotion) -> dict[str, str]:
    """The environment variables ``prefect deploy`` runs with: the target's server.

    A target with a profile is reached through it alone; one without is the server
    this process uses (the source's: both environments share one server).
    """
    env = dict(os.environ)
    if promotion.target_profile:
        for name in CONNECTION_SETTINGS:
            env.pop(name, None)
        env["PREFECT_PROFILE"] = promotion.target_profile
    elif api_url := get_current_settings().api.url:
        env["PREFECT_API_URL"] = api_url
    return env


def deploy(promotion: Promotion, prefect_file: Path = PREFECT_FILE) -> None:
    """Run ``prefect deploy`` of the promotion's deployment against its target.

    Its output goes to this process's; the guardian stops it if this process dies.

    Raises:
        DeployFailed: ``prefect deploy`` exited non-zero.
    """
    command = [
        sys.executable,
        "-m",
        "prefect",
        "--no-prompt",
        "deploy",
        "--name",
        promotion.deployment,
        "--prefect-file",
        str(prefect_file),
    ]
    process = subprocess.Popen(
        command,
        env=target_process_environment(promotion),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    with Guardian.of_process().watching(process.pid):
        code = process.wait()
    if code != 0:
        raise DeployFailed(
            f"`prefect deploy --name {promotion.deployment}` to {promotion.target} exited "
            f"{code}; its output above says why (is `aiorch environment apply "
            f"{promotion.target}` done on that server?)"
        )
