"""Where a model request goes, and a fingerprint of who sends it (never the secret).

Example:
    ```python
    from pydantic import SecretStr

    from aiorch.agent_blocks import ModelProvider
    from aiorch.tasks.agents.endpoints import credential_fingerprint

    provider = ModelProvider(base_url="http://127.0.0.1:8080/v1", api_key=SecretStr("k"))
    print(credential_fingerprint(provider))  # generic|http://127.0.0.1:8080/v1|<hash>
    ```
"""

from __future__ import annotations

import hashlib

from fast_agent.llm.model_factory import ModelFactory
from fast_agent.llm.provider_key_manager import ProviderKeyManager
from fast_agent.llm.provider_types import Provider

from aiorch.agent_blocks.provider import LOCAL_MODEL_NAME, ModelProvider, ProviderKind
from aiorch.core.redaction import register_secret
from aiorch.tasks.agents.local_model import LocalModelServer
from aiorch.tasks.agents.runtime import AgentRuntime

LOCAL_API_KEY = "local"


def connection_arguments(provider: ModelProvider | None) -> dict[str, str]:
    """FastAgent's ``attach_llm`` arguments (``base_url``, ``api_key``) for ``provider``.

    For a ``local`` provider this starts the bundled model server if it is not running.
    """
    if provider is None:
        return {}
    arguments: dict[str, str] = {}
    if provider.kind is ProviderKind.LOCAL:
        arguments["base_url"] = LocalModelServer.shared().base_url()
        arguments["api_key"] = LOCAL_API_KEY
    elif provider.base_url is not None:
        arguments["base_url"] = str(provider.base_url)
    if provider.api_key is not None:
        arguments["api_key"] = provider.api_key.get_secret_value()
        register_secret(arguments["api_key"])
    return arguments


def secrets_of(provider: ModelProvider | None, model: str) -> list[str]:
    """The secret values a request to ``model`` may carry; each is registered for masking.

    The provider block's key; without one, the key FastAgent itself takes for the
    provider serving ``model``: from its settings, or from the environment variable
    that provider reads (``OPENAI_API_KEY``, ...). A provider that echoes the key in an
    error then has it masked whichever source it came from.
    """
    if provider is not None and provider.api_key is not None:
        values = [provider.api_key.get_secret_value()]
    elif provider is not None and provider.kind is ProviderKind.LOCAL:
        values = []  # aiorch's own server, reached with a placeholder key
    else:
        served_by = ModelFactory.parse_model_string(model).provider
        if served_by is Provider.FAST_AGENT:
            return []  # FastAgent's test models (passthrough, playback) take no key
        settings = AgentRuntime.shared().settings
        values = [
            value
            for value in (
                ProviderKeyManager.get_config_file_key(served_by.value, settings),
                ProviderKeyManager.get_env_var(served_by.value),
            )
            if value
        ]
    for value in values:
        register_secret(value)
    return values


def credential_fingerprint(provider: ModelProvider | None) -> str:
    """Which endpoint and credential a request used, without the credential itself."""
    if provider is None:
        return "none"
    if provider.kind is ProviderKind.LOCAL:
        # The port changes with every start; the bundled model does not.
        return f"local|{LOCAL_MODEL_NAME}"
    key = provider.api_key.get_secret_value() if provider.api_key else ""
    identity = hashlib.sha256(f"aiorch-credential\0{key}".encode()).hexdigest()[:16]
    return f"{provider.kind.value}|{provider.base_url or 'default'}|{identity}"
