"""Keyed fingerprints of secret values: equal values match, and nothing leaks.

A step's cache key must change when a secret's value changes (a new token may change
what the step produces), yet a cache key is stored in Prefect's database and shown in
its UI. An HMAC-SHA256 under a key that never leaves the machines (``AIORCH_FINGERPRINT_KEY``,
else a random key made once in the data directory, readable by its owner only) gives
both: a plain hash of a short password could be guessed offline; a keyed one cannot.

Example:
    ```python
    from aiorch.core.fingerprints import secret_fingerprint

    print(len(secret_fingerprint("s3cret-value")))  # 32
    ```
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from aiorch.core.settings import load_settings

KEY_FILE = "fingerprint.key"


def _machine_key(data_dir: Path) -> bytes:
    path = data_dir / KEY_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    staged = data_dir / f"{KEY_FILE}.{os.getpid()}"
    descriptor = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(secrets.token_bytes(32))
    try:
        # The first process to link its key wins; every other one reads that key.
        os.link(staged, path)
    except FileExistsError:
        pass
    finally:
        staged.unlink()
    return path.read_bytes()


def secret_fingerprint(value: str) -> str:
    """A keyed, truncated hash of ``value`` (32 hex digits)."""
    settings = load_settings()
    configured = settings.fingerprint_key
    key = (
        configured.get_secret_value().encode()
        if configured is not None
        else _machine_key(settings.resolved_data_dir())
    )
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]
