"""Roles, lowest to highest: each role can do everything the roles below it can."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    consumer = "consumer"  # chats with endpoints, calls the API, gives feedback
    annotator = "annotator"  # a consumer who also works through the annotation queues given to them
    engineer = "engineer"  # models, prompts, endpoints, datasets, traces, jobs, evals
    admin = "admin"  # users, keys of others, budgets, retention, provider credentials

    @property
    def rank(self) -> int:
        return _RANK[self]

    def covers(self, other: Role) -> bool:
        """True when this role holds at least the rights of `other`."""
        return self.rank >= other.rank


_RANK = {Role.consumer: 0, Role.annotator: 1, Role.engineer: 2, Role.admin: 3}


def lowest(*roles: Role) -> Role:
    return min(roles, key=lambda r: r.rank)
