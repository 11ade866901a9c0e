"""The container step spec and its result.

Every path inside a step is relative to the step's working directory (``workdir``), so
the same step runs unchanged in a container and as local processes, where the working
directory is a temporary folder on the host.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Self

from pydantic import (
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from aiorch.core.access import AccessRole
from aiorch.core.errors import ConfigurationError
from aiorch.core.models import AiorchModel
from aiorch.core.redaction import quoted
from aiorch.core.secrets import SecretRef

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
STEP_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
NUMERIC_USER = re.compile(r"^[0-9]{1,10}:[0-9]{1,10}$")
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
# The reference grammar of the distribution project (github.com/distribution/reference),
# which Docker, Dagger and every registry parse: [domain[:port]/]path[:tag][@digest].
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = (
    r"(?:localhost|\[[0-9A-Fa-f:]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)(?::[0-9]+)?"
)
IMAGE_REFERENCE = re.compile(
    rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
ARGV_EXAMPLE = "[['sh', '-c', 'echo hello']]"


class RunnerKind(StrEnum):
    """Where a step runs. ``auto`` picks dagger, then docker, then local."""

    AUTO = "auto"
    DAGGER = "dagger"
    DOCKER = "docker"
    LOCAL = "local"


def _relative_inside(value: str, field: str, example: str) -> str:
    path = PurePosixPath(value)
    if not value or not path.parts or path.is_absolute() or ".." in path.parts:
        raise ConfigurationError(
            f"{field} must be a relative path inside the step's workdir without '..' "
            f"(got {quoted(value)}); name a path below workdir, e.g. {example!r}"
        )
    return path.as_posix()


class StrictModel(AiorchModel):
    """Immutable; unknown fields are errors; inputs never echoed (they may hold secrets).

    Validation messages name the field and the fix, and quote values only where the
    validator knows they are not secret.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")


class StepInput(StrictModel):
    """A host file or directory copied into the step before it runs."""

    source: Path = Field(description="Host file or directory.")
    target: str = Field(description="Where it appears, relative to the step's workdir.")
    include: tuple[str, ...] = Field(
        default=(), description="gitignore-style patterns to keep; empty keeps everything."
    )
    exclude: tuple[str, ...] = Field(
        default=(), description="gitignore-style patterns to drop, applied after include."
    )

    @field_validator("source")
    @classmethod
    def _source_exists(cls, value: Path) -> Path:
        if not value.exists():
            raise ValueError(f"source {quoted(str(value))} does not exist; point it at a host path")
        return value.resolve()

    @field_validator("target")
    @classmethod
    def _target_relative(cls, value: str) -> str:
        return _relative_inside(value, "target", "data/input.csv")


class CacheVolume(StrictModel):
    """A named cache (package manager downloads, build caches) kept between runs.

    Keyed by name only: two steps that name the same volume share its contents.
    """

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]
    path: str = Field(description="Mount point: absolute, or relative to workdir.")
    env_var: str | None = Field(
        default=None,
        description=(
            "Variable set to the mount point, e.g. PIP_CACHE_DIR. The local runner cannot "
            "mount at an absolute path, so this is how it points tools at the cache."
        ),
    )

    @field_validator("env_var")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not ENV_NAME.match(value):
            raise ValueError(f"env_var {quoted(value)} is not a valid variable name")
        return value


class ContainerStep(StrictModel):
    """One unit of container work: an image, commands, and what goes in and out.

    Example:
        ```python
        from pathlib import Path

        from aiorch.tasks.container import ContainerStep, StepInput

        step = ContainerStep(
            name="count-lines",
            image="busybox@sha256:" + "0" * 64,
            commands=[["sh", "-c", "wc -l < data/input.csv > out/lines.txt"]],
            inputs=[StepInput(source=Path("input.csv"), target="data/input.csv")],
            outputs=["out"],
        )
        ```
    """

    name: str = Field(description="Lower-case name used in task runs, logs and containers.")
    image: str = Field(description="Image reference; pin it by digest (name@sha256:...).")
    commands: tuple[tuple[str, ...], ...] = Field(
        description="Commands run in order, each an argv list; the file system carries over."
    )
    setup: tuple[tuple[str, ...], ...] = Field(
        default=(),
        description=(
            "Commands that prepare the image (install packages) before inputs arrive; "
            "docker and dagger reuse the prepared image for every step with the same "
            "image, setup and env. They run in workdir, without secrets."
        ),
    )
    env: dict[str, str] = Field(default_factory=dict)
    secrets: dict[str, SecretStr | SecretRef] = Field(
        default_factory=dict,
        description=(
            "Variables whose values are secret: SecretStr, or a SecretRef to a Secret block, "
            "an environment variable or a file, read when the step runs."
        ),
    )
    role: AccessRole | None = Field(
        default=None,
        description=(
            "Least privilege: the secrets the step may use and whether its commands may "
            "reach the network (none unless granted). Empty: no restriction."
        ),
    )
    user: str | None = Field(
        default=None,
        description=(
            "Run the commands as this numeric 'UID:GID' (e.g. '65534:65534'); the workdir "
            "and inputs are owned by it, setup still runs as the image's user. Empty: the "
            "image's user, often root. docker runner only."
        ),
    )
    read_only_root: bool = Field(
        default=False,
        description=(
            "Mount the image's file system read-only for the commands: only the workdir, "
            "its cache volumes and an in-memory /tmp are writable. docker runner only."
        ),
    )
    workdir: str = Field(default="/work", description="Absolute working directory.")
    inputs: tuple[StepInput, ...] = ()
    cache_volumes: tuple[CacheVolume, ...] = ()
    outputs: tuple[str, ...] = Field(
        default=(), description="Paths relative to workdir exported back to the host."
    )
    timeout_seconds: float | None = Field(
        default=600.0, gt=0, description="Limit for all commands together; None for none."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not STEP_NAME.match(value):
            raise ValueError(
                f"name {quoted(value)} must be 1-63 lower-case letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        return value

    @field_validator("user")
    @classmethod
    def _user(cls, value: str | None) -> str | None:
        if value is not None and not NUMERIC_USER.match(value):
            raise ValueError(
                f"user {quoted(value)} must be numeric 'UID:GID' such as '65534:65534' "
                "(a name would need the image's /etc/passwd, which aiorch does not read)"
            )
        return value

    def owner(self) -> tuple[int, int] | None:
        """The numeric (uid, gid) of :attr:`user`, if set."""
        if self.user is None:
            return None
        uid, gid = self.user.split(":")
        return int(uid), int(gid)

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not IMAGE_REFERENCE.match(value):
            raise ValueError(
                f"image {quoted(value)} must be a reference such as 'busybox:1.36', "
                "'registry.example.com:5000/team/tool:2.1' or 'name@sha256:<64 hex digits>'"
            )
        return value

    @field_validator("commands", "setup", mode="before")
    @classmethod
    def _argv_shape(cls, value: Any, info: ValidationInfo) -> Any:
        # Pydantic alone says "Input should be a valid tuple": name the shape expected.
        if isinstance(value, str):
            raise ValueError(
                f"{info.field_name} must be a list of argv lists, not a string (nothing is "
                f"split by a shell); e.g. {ARGV_EXAMPLE}"
            )
        if isinstance(value, list | tuple):
            for index, command in enumerate(value):
                if isinstance(command, str):
                    raise ValueError(
                        f"{info.field_name}[{index}] is a string; each command is an argv "
                        f"list, e.g. {ARGV_EXAMPLE}"
                    )
                if isinstance(command, list | tuple) and any(
                    "\0" in argument for argument in command if isinstance(argument, str)
                ):
                    raise ValueError(
                        f"{info.field_name}[{index}] holds a NUL byte, which no command line "
                        "can carry; remove it"
                    )
        return value

    @field_validator("commands", "setup")
    @classmethod
    def _argv_lists(
        cls, value: tuple[tuple[str, ...], ...], info: ValidationInfo
    ) -> tuple[tuple[str, ...], ...]:
        empty = any(not command or not command[0] for command in value)
        if empty or (info.field_name == "commands" and not value):
            raise ValueError(
                f"{info.field_name} must hold non-empty argv lists (commands at least one), "
                "e.g. [['sh', '-c', 'echo hello']]"
            )
        return value

    @field_validator("env")
    @classmethod
    def _env_values(cls, value: dict[str, str]) -> dict[str, str]:
        for name, item in value.items():
            if "\0" in item:
                raise ValueError(
                    f"env[{name!r}] holds a NUL byte, which no process environment can "
                    "carry; remove it"
                )
        return value

    @field_validator("secrets", mode="before")
    @classmethod
    def _secrets_are_wrapped(cls, value: Any) -> Any:
        # A bare value could be the secret itself: refuse it without echoing it.
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, str):
                    raise ValueError(
                        f"secrets[{key!r}] is a plain string; wrap the value in SecretStr(...) "
                        "or name where it is read: SecretRef(block=...), SecretRef(env=...) "
                        "or SecretRef(file=...)"
                    )
                if isinstance(item, SecretStr) and "\0" in item.get_secret_value():
                    raise ValueError(
                        f"secrets[{key!r}] holds a NUL byte, which no process environment "
                        "can carry; remove it"
                    )
                if not isinstance(item, SecretStr | SecretRef | dict):
                    raise ValueError(
                        f"secrets[{key!r}] is of type {type(item).__name__}; give SecretStr('...') "
                        "or SecretRef(block='name-of-a-secret-block')"
                    )
        return value

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, value: str) -> str:
        path = PurePosixPath(value)
        if not path.is_absolute() or ".." in path.parts:
            raise ValueError(f"workdir {quoted(value)} must be an absolute path such as '/work'")
        return path.as_posix()

    @field_validator("outputs")
    @classmethod
    def _outputs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        outputs = tuple(_relative_inside(item, "outputs", "out") for item in value)
        for output in outputs:
            for other in outputs:
                if other != output and PurePosixPath(output).is_relative_to(other):
                    raise ValueError(
                        f"outputs {output!r} lies inside {other!r}; list only {other!r}"
                    )
        if len(set(outputs)) != len(outputs):
            raise ValueError("outputs lists a path twice; list each path once")
        return outputs

    @model_validator(mode="after")
    def _names_do_not_clash(self) -> Self:
        for name in [*self.env, *self.secrets]:
            if not ENV_NAME.match(name):
                raise ValueError(f"environment variable name {name!r} is not valid")
        clash = set(self.env) & set(self.secrets)
        if clash:
            raise ValueError(
                f"{sorted(clash)} set in both env and secrets; keep each name in one of them"
            )
        names = [volume.name for volume in self.cache_volumes]
        if len(names) != len(set(names)):
            raise ValueError("cache_volumes names must be unique")
        return self

    @property
    def image_pinned(self) -> bool:
        """True when the image is pinned by digest, so a cached result cannot go stale."""
        return bool(DIGEST.search(self.image))


class StepResult(StrictModel):
    """What a step did. Full output went to the Prefect logs; the tails are kept here."""

    step: str
    runner: RunnerKind
    image: str
    image_used: bool = Field(description="False when the local runner ran host processes.")
    exit_code: int
    stdout_tail: str
    stderr_tail: str
    outputs: dict[str, Path] = Field(
        default_factory=dict, description="Each exported output path and where it is on the host."
    )
    duration_seconds: float
    cache_hit: bool = False
