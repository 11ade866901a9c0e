"""The gateway's error for a caller it cannot identify (refusals use ``PermissionDenied``)."""

from __future__ import annotations

from typing import Literal

from aiorch.core.errors import AiorchError

Reason = Literal["missing", "malformed", "unknown", "forged", "expired", "revoked"]


class AuthenticationFailed(AiorchError):
    """No valid token came with a request.

    ``reason`` is for the audit trail only: the caller is told 401 and nothing about which
    part was wrong, so a guesser learns nothing from the answer.
    """

    kind = "authentication-failed"
    title = "Authentication failed"
    status = 401

    def __init__(self, reason: Reason, token_id: str | None = None) -> None:
        super().__init__(f"authentication failed: {reason}")
        self.reason: Reason = reason
        self.token_id = token_id

    def context(self) -> dict[str, object]:
        """The reason and the token id (an identifier, not the secret)."""
        return {"reason": self.reason, "token_id": self.token_id}
