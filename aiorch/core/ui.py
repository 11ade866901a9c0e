"""Links into the Prefect UI that open its V2 app, where artifacts' diagrams render.

The Prefect server serves two UIs. A deep link without the ``/v2`` prefix
(``/runs/flow-run/<id>``) opens the older one, which shows mermaid diagrams as raw code;
under ``/v2/`` the same pages render them.

Example:
    ```python
    from aiorch.core.ui import v2_link

    print(v2_link("http://127.0.0.1:4200", "runs/flow-run/0b9c"))
    # http://127.0.0.1:4200/v2/runs/flow-run/0b9c
    ```
"""

from __future__ import annotations

from prefect.settings import get_current_settings

V2_PREFIX = "/v2"


def v2_base(ui_url: str) -> str:
    """The V2 UI's root for the server whose UI is at ``ui_url`` (no trailing slash)."""
    base = ui_url.rstrip("/")
    return base if base.endswith(V2_PREFIX) else base + V2_PREFIX


def v2_link(ui_url: str, path: str) -> str:
    """``path`` under the V2 UI of the server whose UI is at ``ui_url``."""
    return f"{v2_base(ui_url)}/{path.lstrip('/')}"


def ui_link(path: str) -> str | None:
    """``path`` in the V2 UI of the current Prefect API; None when it has no UI."""
    ui_url = get_current_settings().ui_url
    return v2_link(ui_url, path) if ui_url else None
