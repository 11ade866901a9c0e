"""The gateway's audit trail: every refused request, as a log line and a Prefect event.

Each entry says who (the client address, and the token's id, name and role when the
token was valid), what (method and path, never the query or body), and why (the failure
reason or the permission the role lacks). It never holds the token: the id is an
identifier printed by ``aiorch auth token list``, the secret stays with its owner.

Events are posted straight to the Prefect server behind the gateway, named
``aiorch.gateway.auth-failed``, ``aiorch.gateway.denied`` and
``aiorch.gateway.rate-limited``, about the resource ``aiorch.gateway.<name>``: an
automation on them alerts on a brute-force attempt or a misconfigured worker.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import aiohttp
from prefect.events.schemas.events import Event, Resource

from aiorch.core.models import AiorchModel
from aiorch.gateway.roles import Permission, Role

AUDIT_EVENT_PREFIX = "aiorch.gateway"
logger = logging.getLogger("aiorch.gateway.audit")

Outcome = Literal["auth-failed", "denied", "rate-limited"]


class AuditEntry(AiorchModel):
    """One refused request."""

    outcome: Outcome
    client: str
    method: str
    path: str
    reason: str
    token_id: str | None = None
    token_name: str | None = None
    role: Role | None = None
    needed: Permission | None = None

    def line(self) -> str:
        """The entry as one log line."""
        who = f"token {self.token_id} ({self.token_name}, {self.role})" if self.token_id else ""
        return (
            f"gateway {self.outcome}: {self.method} {self.path} from {self.client}"
            f"{' by ' + who if who else ''}: {self.reason}"
        )


class AuditTrail:
    """Writes entries to the log and posts them as events to the server behind the gateway."""

    def __init__(self, name: str) -> None:
        self.resource = Resource(
            {"prefect.resource.id": f"{AUDIT_EVENT_PREFIX}.{name}", "prefect.resource.name": name}
        )

    async def record(
        self, entry: AuditEntry, post: Callable[[list[dict[str, Any]]], Awaitable[None]]
    ) -> None:
        """Log ``entry`` and ``post`` it (to the server's events API) as a Prefect event."""
        logger.warning(entry.line())
        event = Event(
            event=f"{AUDIT_EVENT_PREFIX}.{entry.outcome}",
            resource=self.resource,
            payload=entry.model_dump(mode="json"),
        )
        try:
            await post([event.model_dump(mode="json")])
        except (OSError, aiohttp.ClientError) as error:
            # The log line above is the record that must not fail.
            logger.warning(
                "gateway audit: the event did not reach the Prefect server (%s); the log "
                "line above is the record",
                type(error).__name__,
            )
