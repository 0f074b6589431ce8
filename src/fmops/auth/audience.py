"""Who may use something published to some roles and/or users: an endpoint's `access`, an
assistant's audience. One rule for both: a role named covers the roles above it (consumer: everyone
in the project), a user named by name is in, and engineers and admins, who build and publish these,
are always in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydantic.config import JsonDict

from fmops.auth.principal import Principal
from fmops.auth.roles import Role

# An audience names someone: at least one role or one user. In the JSON schema too (a model's
# `json_schema_extra`), so clients and schemathesis know what the validators refuse with a 400.
SOMEONE_SCHEMA: JsonDict = {
    "anyOf": [
        {"required": ["roles"], "properties": {"roles": {"minItems": 1}}},
        {"required": ["users"], "properties": {"users": {"minItems": 1}}},
    ]
}


def admits(principal: Principal, roles: Iterable[Role], users: Iterable[str]) -> bool:
    """Whether `principal` is among those the roles and users name (engineers and admins always)."""
    return admitted(principal.role, principal.user_name, roles, users)


def admitted(role: Role, user_name: str, roles: Iterable[Role], users: Iterable[str]) -> bool:
    """`admits` for a role and a user name (e.g. a user not signed in yet, checked when publishing)."""
    if role.covers(Role.engineer):
        return True
    return user_name in users or any(role.covers(r) for r in roles)


@dataclass(frozen=True, slots=True)
class Audience:
    """`admits` precomputed for the hot path: a set lookup and a rank comparison per call."""

    roles: frozenset[Role]
    users: frozenset[str]
    lowest: int  # the rank of the lowest role admitted (engineer's when no role is named)

    @classmethod
    def of(cls, roles: Iterable[Role], users: Iterable[str]) -> Audience:
        roles = frozenset(roles)
        lowest = min((r.rank for r in roles), default=Role.engineer.rank)
        return cls(roles, frozenset(users), min(lowest, Role.engineer.rank))

    def admits(self, principal: Principal) -> bool:
        return principal.role.rank >= self.lowest or principal.user_name in self.users
