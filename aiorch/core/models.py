"""The base of aiorch's pydantic models.

Validation errors of a model never quote its input: a mistyped field may hold a secret
(an API key passed where a name was expected), and errors end up in logs, Prefect
states and events. Each error still names the field and what it expects.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class AiorchModel(BaseModel):
    """Base of every aiorch model that crosses a boundary (specs, results, configs)."""

    model_config = ConfigDict(hide_input_in_errors=True)
