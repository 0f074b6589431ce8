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
    # Limits (None: unlimited); budgets are in the currency of the models' prices.
    key_rpm: int | None = None
    key_tpm: int | None = None
    key_budget: float | None = None
    key_budget_period: str = "month"
    project_rpm: int | None = None
    project_tpm: int | None = None
    project_budget: float | None = None
    project_budget_period: str = "month"

    def require(self, role: Role, action: str = "do this") -> None:
        if not self.role.covers(role):
            raise PermissionDenied(
                f"the {self.role} role may not {action}; it needs a key with the {role} role"
            )
