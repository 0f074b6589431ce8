"""Who is calling: the verified identity behind an API key."""

from __future__ import annotations

from dataclasses import dataclass

from fmops.auth.roles import Role
from fmops.errors import PermissionDenied


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    user_id: str
    user_name: str
    project_id: str
    project_name: str
    role: Role

    def require(self, role: Role, action: str = "do this") -> None:
        if not self.role.covers(role):
            raise PermissionDenied(
                f"the {self.role} role may not {action}; it needs a key with the {role} role"
            )
