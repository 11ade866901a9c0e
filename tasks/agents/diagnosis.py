"""What went wrong on the way to a model endpoint, when the provider's SDK cannot say.

The OpenAI SDK reports a refused connection, a failed DNS lookup and a slow server
alike (``APITimeoutError`` / ``APIConnectionError``, "Request timed out."). When a
request fails that way, aiorch asks the endpoint itself, step by step: resolve the
host, open a TCP connection, complete a TLS handshake (https), so the error says which
step failed and whether a retry may help.

Example:
    ```python
    from aiorch.tasks.agents.diagnosis import diagnose_endpoint

    found = diagnose_endpoint("http://127.0.0.1:9/v1")
    print(found.kind, found.retryable)  # refused True
    ```
"""

from __future__ import annotations

import socket
import ssl
from typing import Literal
from urllib.parse import urlsplit

from aiorch.core.models import AiorchModel

PROBE_SECONDS = 3.0

Finding = Literal["dns", "refused", "unreachable", "tls", "timeout", "answers"]


class ConnectionDiagnosis(AiorchModel):
    """Which step of reaching an endpoint failed, in words, and whether to retry."""

    kind: Finding
    detail: str
    retryable: bool


def diagnose_endpoint(base_url: str, timeout: float = PROBE_SECONDS) -> ConnectionDiagnosis:
    """Resolve, connect to and (for https) shake hands with ``base_url``'s host."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    where = f"{host}:{port}"
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        return ConnectionDiagnosis(
            kind="dns",
            detail=f"the host {host!r} does not resolve ({error.strerror}); check base_url",
            retryable=False,
        )
    family, kind, protocol, _, address = addresses[0]
    try:
        with socket.socket(family, kind, protocol) as connection:
            connection.settimeout(timeout)
            connection.connect(address)
            if parts.scheme == "https":
                context = ssl.create_default_context()
                with context.wrap_socket(connection, server_hostname=host):
                    pass
    except ConnectionRefusedError:
        return ConnectionDiagnosis(
            kind="refused",
            detail=(
                f"connection refused: nothing listens at {where}; start the model server "
                "or fix base_url (a retry helps once it listens)"
            ),
            retryable=True,
        )
    except ssl.SSLError as error:
        return ConnectionDiagnosis(
            kind="tls",
            detail=f"TLS handshake with {where} failed ({error.reason or error}); check the "
            "certificate or use http:// for a local server",
            retryable=False,
        )
    except TimeoutError:
        return ConnectionDiagnosis(
            kind="timeout",
            detail=f"{where} did not accept a connection within {timeout:g} s (a retry may help)",
            retryable=True,
        )
    except OSError as error:
        return ConnectionDiagnosis(
            kind="unreachable",
            detail=f"{where} is unreachable ({error.strerror or error}); a retry may help",
            retryable=True,
        )
    return ConnectionDiagnosis(
        kind="answers",
        detail=f"{where} accepts connections, but the request got no reply in time "
        "(a retry may help; a longer provider.request_timeout_seconds may too)",
        retryable=True,
    )
