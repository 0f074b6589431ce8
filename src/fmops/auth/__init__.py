"""Authentication and authorization: projects, users, roles and hashed API keys."""

from fmops.auth.audience import Audience, admits
from fmops.auth.principal import Principal
from fmops.auth.roles import Role
from fmops.auth.service import DEFAULT_PROJECT, AuthService, Member

__all__ = ["DEFAULT_PROJECT", "Audience", "AuthService", "Member", "Principal", "Role", "admits"]
