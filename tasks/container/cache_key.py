"""Cache keys for container steps, computed from content, never from secrets or paths.

The key covers the spec (secret *names* and Secret block names, not their values), a
content hash of every input, the image's identity (the engine's immutable id when it
knows the image, else the reference) and the runner kind. The host location of inputs
and outputs is left out on purpose: the same files in another checkout hit the cache.
Changing a secret's value does not change the key: use ``refresh_cache=True`` when a
secret's value changes what a step produces.
"""

from __future__ import annotations

import hashlib
import json

from aiorch.tasks.container.files import hash_inputs
from aiorch.tasks.container.spec import ContainerStep, RunnerKind, SecretRef

KEY_VERSION = "aiorch-step-v1"


def step_cache_key(step: ContainerStep, runner: RunnerKind, image_identity: str | None) -> str:
    """The content key of ``step`` on ``runner``; equal keys mean equal results."""
    spec = step.model_dump(mode="json", exclude={"secrets", "inputs", "timeout_seconds"})
    payload = {
        "version": KEY_VERSION,
        "spec": spec,
        "secrets": {
            name: (f"block:{value.block}" if isinstance(value, SecretRef) else "literal")
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
