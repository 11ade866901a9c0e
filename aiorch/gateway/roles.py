"""Roles a gateway token carries, and the permissions each grants.

Permissions are levels: each role grants its own and every level below it.

- ``viewer`` (read): everything the UI shows, block secrets left out;
- ``operator`` (run): also run deployments and flows, cancel and resume runs, write task
  runs, logs, artifacts and events, read block secrets (a flow loads its blocks), and
  serve as a worker;
- ``author`` (author): also create, change and delete deployments, blocks, variables,
  automations and concurrency limits;
- ``admin`` (admin): also work pools and queues, the server's settings and storage.

Example:
    ```python
    from aiorch.gateway.roles import Permission, Role

    print(Role.OPERATOR.grants(Permission.RUN))  # True
    print(Role.VIEWER.grants(Permission.RUN))  # False
    ```
"""

from __future__ import annotations

from enum import StrEnum


class Permission(StrEnum):
    """What a request needs, from least to most."""

    READ = "read"
    RUN = "run"
    AUTHOR = "author"
    ADMIN = "admin"

    @property
    def level(self) -> int:
        """The rank of this permission (read is 0)."""
        return list(Permission).index(self)


class Role(StrEnum):
    """What a token may do; each role has one permission level."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    AUTHOR = "author"
    ADMIN = "admin"

    @property
    def permission(self) -> Permission:
        """The highest permission this role grants."""
        return _ROLE_PERMISSION[self]

    def grants(self, permission: Permission) -> bool:
        """Whether this role may make a request that needs ``permission``."""
        return self.permission.level >= permission.level


_ROLE_PERMISSION = {
    Role.VIEWER: Permission.READ,
    Role.OPERATOR: Permission.RUN,
    Role.AUTHOR: Permission.AUTHOR,
    Role.ADMIN: Permission.ADMIN,
}
