"""Cache keys for container steps, computed from content, never from secrets or paths.

The key covers the spec (commands, setup, env, workdir, outputs, cache volumes, the
secrets' names and where they come from), a content hash of every input, a keyed
fingerprint of each secret's value (:mod:`aiorch.core.fingerprints`: a changed secret is
a miss, and the key reveals nothing of it), the image's identity (the engine's immutable
id when it knows the image, else the reference) and the runner kind. Left out on
purpose: the host location of inputs (the same files in another checkout hit the cache),
their modification times, and the timeout (it does not change what a step produces).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from aiorch.core.errors import ConfigurationError
from aiorch.core.fingerprints import secret_fingerprint
from aiorch.core.secrets import SecretRef
from aiorch.tasks.container.files import hash_inputs
from aiorch.tasks.container.spec import ContainerStep, RunnerKind

# v2: secret values count (as keyed fingerprints).
KEY_VERSION = "aiorch-step-v2"
ISOLATION_FIELDS = ("role", "user", "read_only_root")


def step_cache_key(
    step: ContainerStep,
    runner: RunnerKind,
    image_identity: str | None,
    secret_values: Mapping[str, str] | None = None,
) -> str:
    """The content key of ``step`` on ``runner``; equal keys mean equal results.

    ``secret_values`` are the resolved values of ``step.secrets`` (a step without
    secrets needs none).
    """
    values = secret_values or {}
    missing = sorted(set(step.secrets) - set(values))
    if missing:
        raise ConfigurationError(
            f"secrets {missing}: their values are needed for the cache key; resolve them first"
        )
    # Isolation settings are part of the key only when set: keys of steps without them
    # stay what they were before they existed.
    unset = {name for name in ISOLATION_FIELDS if not getattr(step, name)}
    left_out = {"secrets", "inputs", "timeout_seconds"} | unset
    spec = step.model_dump(mode="json", exclude=left_out)
    payload = {
        "version": KEY_VERSION,
        "spec": spec,
        "secrets": {
            name: {
                "source": value.source if isinstance(value, SecretRef) else "literal",
                "value": secret_fingerprint(values[name]),
            }
            for name, value in sorted(step.secrets.items())
        },
        "inputs": [
            {"target": item.target, "include": item.include, "exclude": item.exclude}
            for item in step.inputs
        ],
        "input_content": hash_inputs(step),
        "image": image_identity or step.image,
        "runner": runner.value,
    }
    encoded = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return f"{step.name}-{hashlib.sha256(encoded).hexdigest()}"
