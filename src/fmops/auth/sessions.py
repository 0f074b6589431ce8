"""Browser sign-in: a session per sign-in, with a key (its exact rights) or a user's password (their role).

The cookie carries a random token; the table keeps its SHA-256, so a copy of the database signs
nobody in. Every request re-derives the principal: a revoked key, a disabled user or a removed
membership ends the session at once, as it ends the key.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select, update

from fmops.auth import AuthService, Principal, Role
from fmops.auth.passwords import check_password, dummy_hash, hash_password, verify_password
from fmops.auth.service import DEFAULT_PROJECT, storable
from fmops.errors import AuthenticationError, Conflict, NotFound
from fmops.store import Store, utcnow
from fmops.store.models import Membership, Project, User, WebSession

_TOUCH_EVERY = timedelta(minutes=1)  # sliding expiry without a write on every page
_TOKEN_BYTES = 32
# A password session acts as no key; this prefix stands in the key column of what it records.
SESSION_KEY_PREFIX = "web-"


def password_member(principal: Principal) -> str | None:
    """The user a principal of a password session acts as (a job it starts calls models as them);
    None for a principal with a key of its own."""
    return principal.user_id if principal.key_id.startswith(SESSION_KEY_PREFIX) else None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SignedIn:
    principal: Principal
    csrf_token: str
    with_key: bool  # signed in with a key (else a password)


class SessionService:
    def __init__(self, store: Store, auth: AuthService, *, hours: float) -> None:
        self.store = store
        self.auth = auth
        self.lifetime = timedelta(hours=hours)

    # --- signing in and out -------------------------------------------------------------------

    def sign_in_with_key(self, raw_key: str) -> str:
        principal = self.auth.authenticate(raw_key.strip())
        return self._open(principal.user_id, principal.project_id, principal.key_id)

    def sign_in_with_password(self, user_name: str, password: str, project: str | None = None) -> str:
        with self.store.session() as session:
            user = session.scalar(select(User).where(User.name == user_name)) if storable(user_name) else None
        if user is None or user.disabled:
            verify_password(password, dummy_hash())  # the same time as a real check
            raise AuthenticationError("wrong user name or password")
        if not verify_password(password, user.password_hash):
            raise AuthenticationError("wrong user name or password")
        return self._open(user.id, self._project_of(user.id, project), None)

    def _project_of(self, user_id: str, name: str | None) -> str:
        """The named project, else the default one, else the first the user belongs to."""
        with self.store.session() as session:
            rows = session.execute(
                select(Project.id, Project.name)
                .join(Membership, Membership.project_id == Project.id)
                .where(Membership.user_id == user_id)
                .order_by(Project.name)
            ).all()
        by_name: dict[str, str] = {row.name: row.id for row in rows}
        if name:
            if name not in by_name:
                raise AuthenticationError(f"you are not a member of a project named {name[:100]!r}")
            return by_name[name]
        if not rows:
            raise AuthenticationError("this user is not a member of any project; ask an admin to add you")
        return by_name.get(DEFAULT_PROJECT, str(rows[0].id))

    def _open(self, user_id: str, project_id: str, key_id: str | None) -> str:
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        now = utcnow()
        with self.store.write() as session:
            session.add(
                WebSession(
                    token_hash=_digest(token),
                    user_id=user_id,
                    project_id=project_id,
                    key_id=key_id,
                    csrf_token=secrets.token_urlsafe(24),
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + self.lifetime,
                )
            )
            # Expired sessions of this user go as a new one starts: the table stays small without a job.
            session.execute(
                delete(WebSession).where(WebSession.user_id == user_id, WebSession.expires_at < now)
            )
        return token

    def sign_out(self, token: str) -> None:
        with self.store.write() as session:
            session.execute(delete(WebSession).where(WebSession.token_hash == _digest(token)))

    def sign_out_user(self, user_id: str) -> int:
        """End every session of a user (a password change, a disabled user)."""
        with self.store.write() as session:
            result = session.execute(delete(WebSession).where(WebSession.user_id == user_id))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    # --- every request ------------------------------------------------------------------------

    def resolve(self, token: str) -> SignedIn | None:
        """The signed-in principal for a cookie's token; None when it is unknown, expired or void."""
        if not token or len(token) > 200:
            return None
        digest = _digest(token)
        now = utcnow()
        with self.store.session() as session:
            row = session.get(WebSession, digest)
        if row is None or row.expires_at <= now:
            return None
        try:
            if row.key_id is not None:
                principal = self.auth.principal_for_key_id(row.key_id)
            else:
                principal = self.auth.member_principal(
                    row.user_id, row.project_id, (SESSION_KEY_PREFIX + row.token_hash)[:32]
                )
        except (AuthenticationError, NotFound):
            self.sign_out(token)
            return None
        if now - row.last_seen_at > _TOUCH_EVERY:
            with self.store.write() as session:
                session.execute(
                    update(WebSession)
                    .where(WebSession.token_hash == digest)
                    .values(last_seen_at=now, expires_at=now + self.lifetime)
                )
        return SignedIn(principal=principal, csrf_token=row.csrf_token, with_key=row.key_id is not None)

    # --- passwords ----------------------------------------------------------------------------

    def set_password(self, user_id: str, password: str) -> None:
        """Set a user's password and end their other sessions (the caller signs in again if it was theirs)."""
        digest = hash_password(check_password(password))
        with self.store.write() as session:
            user = session.get(User, user_id) if storable(user_id) else None
            if user is None:
                raise NotFound(f"no user with id {user_id!r}")
            user.password_hash = digest
        self.sign_out_user(user_id)

    def set_member_password(self, principal: Principal, user_id: str, password: str) -> None:
        """An admin sets the password of a member of their project (the web console, the REST API).

        A password opens every project of its user, so the admin must be admin in each of them:
        otherwise an admin of one project could take over a user's access to another.
        """
        principal.require(Role.admin, "set passwords")
        with self.store.session() as session:
            member = session.get(Membership, (user_id, principal.project_id)) if storable(user_id) else None
            if member is None:
                raise NotFound(f"no user with id {user_id!r} in this project")
            admin_in = select(Membership.project_id).where(
                Membership.user_id == principal.user_id, Membership.role == Role.admin
            )
            elsewhere = session.scalar(
                select(func.count())
                .select_from(Membership)
                .where(Membership.user_id == user_id, Membership.project_id.not_in(admin_in))
            )
        if elsewhere:
            raise Conflict(
                "this user also belongs to projects you are not admin of; an admin of every one of "
                "them (or the server's operator: `fmops users set-password`) must set it"
            )
        self.set_password(user_id, password)
