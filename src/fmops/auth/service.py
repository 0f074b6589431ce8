"""Projects, users, memberships and API keys: creation, verification and the rules between them.

The rule that matters most: a key never carries more rights than its creator. A key acts in one
project with one role, capped by its user's role in that project at the time of every request.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import ColumnElement, func, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from fmops.auth.keys import display_prefix, generate_key, hash_key, well_formed
from fmops.auth.limits import LimitChanges
from fmops.auth.principal import Principal
from fmops.auth.roles import Role, lowest
from fmops.errors import AuthenticationError, Conflict, NotFound, PermissionDenied, UserError
from fmops.store import Store, utcnow
from fmops.store.engine import SQLITE_BUSY_TIMEOUT_MS
from fmops.store.models import ApiKey, Membership, Project, User

DEFAULT_PROJECT = "default"
ADMIN_USER = "admin"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,99}$")
_CACHE_MAX = 10_000
log = logging.getLogger(__name__)
_BOOTSTRAP_LOCK_ID = 0x666D6B62  # any constant shared by every fmops process
# Writing last_used_at on every request would put a write on the hot path; once a minute is enough.
_LAST_USED_EVERY_S = 60.0
_LAST_USED_WAIT_MS = 200  # how long that write waits for SQLite's write lock before giving up


def storable(value: str) -> bool:
    """Whether a database can hold this text at all; an id or name that cannot matches nothing.

    PostgreSQL refuses NUL characters even as a query parameter, and no backend encodes a lone surrogate.
    """
    if "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def check_name(value: str, what: str) -> str:
    if not _NAME_RE.fullmatch(value):  # not match(): `$` would let a trailing newline through
        raise UserError(
            f"{what} name {value[:40]!r} is not valid: use 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            param="name",
        )
    return value


def check_key_name(value: str) -> str:
    value = value.strip()
    if not value or len(value) > 100 or any(ord(c) < 32 for c in value):
        raise UserError("key name must be 1-100 printable characters", param="name")
    return value


@dataclass(frozen=True, slots=True)
class Member:
    user: User
    role: Role


class AuthService:
    def __init__(self, store: Store, *, cache_seconds: float = 2.0) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self._cache: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._lock = threading.Lock()

    # --- verification -------------------------------------------------------------------------

    def authenticate(self, raw: str | None) -> Principal:
        if not raw:
            raise AuthenticationError(
                "missing API key: send the header `Authorization: Bearer <key>` "
                "(create a key with `fmops keys create`)"
            )
        if not well_formed(raw):
            raise AuthenticationError(
                "invalid API key: fmops keys look like `fmk-` followed by 40 characters"
            )
        digest = hash_key(raw)
        now = time.monotonic()
        hit = self._cached(digest, now)
        if hit is not None:
            return hit
        principal = self._load_principal(ApiKey.hash == digest)
        with self._lock:
            self._cache[digest] = (now + self.cache_seconds, principal)
            while len(self._cache) > _CACHE_MAX:
                self._cache.popitem(last=False)
        return principal

    def _record_use(self, key_id: str, now: datetime) -> None:
        """Set last_used_at, best effort: on SQLite, a write lock held by another process (a backup,
        a long CLI command) must not hold up the call for the whole busy timeout; the next check of
        the key records it instead."""
        try:
            with self.store.session() as session:
                sqlite = self.store.dialect == "sqlite"
                if sqlite:
                    session.execute(text(f"PRAGMA busy_timeout = {_LAST_USED_WAIT_MS}"))
                try:
                    session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))
                finally:
                    if sqlite:  # the pooled connection goes back with the store's own timeout
                        session.execute(text(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"))
        except OperationalError as exc:
            if self.store.dialect != "sqlite":
                raise  # the database is away: the caller answers 503
            log.info("key use not recorded: the database is busy", extra={"error": str(exc.orig)[:100]})

    def cached(self, raw: str) -> Principal | None:
        """The principal for a recently verified key, without touching the database (hot path)."""
        if not well_formed(raw):
            return None
        return self._cached(hash_key(raw), time.monotonic())

    def _cached(self, digest: str, now: float) -> Principal | None:
        with self._lock:
            hit = self._cache.get(digest)
            if hit and hit[0] > now:
                self._cache.move_to_end(digest)
                return hit[1]
        return None

    def principal_for_key_id(self, key_id: str) -> Principal:
        """The principal of a key known by id (a web session signed in with it), checked as a request is."""
        return self._load_principal(ApiKey.id == key_id)

    def job_caller(self, key_id: str, project_id: str, member_user_id: str | None = None) -> Principal:
        """Whom a job calls models as: the key that started it, or the member whose password session
        did (with their role when the job runs). Checked as a request is: revoked, disabled or
        removed, the job stops."""
        if member_user_id:
            return self.member_principal(member_user_id, project_id, key_id)
        return self.principal_for_key_id(key_id)

    def member_principal(self, user_id: str, project_id: str, key_id: str) -> Principal:
        """A member acting with their role, as no key (a password session, or a run one started):
        `key_id` stands in the key column of what they record."""
        with self.store.session() as session:
            found = session.execute(
                select(User, Project, Membership.role)
                .join(Membership, Membership.user_id == User.id)
                .join(Project, Project.id == Membership.project_id)
                .where(User.id == user_id, Project.id == project_id)
            ).first()
        if found is None or found[0].disabled:
            raise AuthenticationError("this user no longer has access to the project")
        user, project, role = found
        return Principal(
            key_id=key_id,
            user_id=user.id,
            user_name=user.name,
            project_id=project.id,
            project_name=project.name,
            role=Role(role),
            project_rpm=project.rpm_limit,
            project_tpm=project.tpm_limit,
            project_budget=project.budget,
            project_budget_period=project.budget_period,
        )

    def _load_principal(self, which: ColumnElement[bool]) -> Principal:
        query = (
            select(ApiKey, User, Project, Membership.role)
            .join(User, User.id == ApiKey.user_id)
            .join(Project, Project.id == ApiKey.project_id)
            .outerjoin(
                Membership,
                (Membership.user_id == ApiKey.user_id) & (Membership.project_id == ApiKey.project_id),
            )
            .where(which)
        )
        with self.store.session() as session:
            row = session.execute(query).first()
        if row is None:
            raise AuthenticationError("invalid API key: no such key")
        key, user, project, member_role = row
        now = utcnow()
        if key.revoked_at is not None:
            raise AuthenticationError("this API key was revoked; ask an admin for a new one")
        if key.expires_at is not None and key.expires_at <= now:
            raise AuthenticationError("this API key has expired; create a new one")
        if user.disabled or member_role is None:
            raise AuthenticationError("this API key's user no longer has access to its project")
        if key.last_used_at is None or (now - key.last_used_at).total_seconds() > _LAST_USED_EVERY_S:
            self._record_use(key.id, now)
        return Principal(
            key_id=key.id,
            user_id=user.id,
            user_name=user.name,
            project_id=project.id,
            project_name=project.name,
            role=lowest(Role(key.role), Role(member_role)),
            key_rpm=key.rpm_limit,
            key_tpm=key.tpm_limit,
            key_budget=key.budget,
            key_budget_period=key.budget_period,
            project_rpm=project.rpm_limit,
            project_tpm=project.tpm_limit,
            project_budget=project.budget,
            project_budget_period=project.budget_period,
        )

    def forget_cached(self) -> None:
        """Drop verified keys so a revocation or role change applies to the next request here."""
        with self._lock:
            self._cache.clear()

    # --- projects -----------------------------------------------------------------------------

    def project_by_name(self, session: Session, name: str) -> Project:
        project = session.scalar(select(Project).where(Project.name == name)) if storable(name) else None
        if project is None:
            raise NotFound(f"no project named {name!r}; create it with `fmops projects create {name}`")
        return project

    def create_project(self, name: str, *, owner: Principal | None = None) -> Project:
        """Create a project; the creating key's user becomes its admin."""
        check_name(name, "project")
        if owner is not None:
            owner.require(Role.admin, "create projects")
        with self.store.write() as session:
            if session.scalar(select(Project.id).where(Project.name == name)):
                raise Conflict(f"a project named {name!r} already exists", param="name")
            project = Project(name=name)
            session.add(project)
            session.flush()
            if owner is not None:
                session.add(Membership(user_id=owner.user_id, project_id=project.id, role=Role.admin))
        return project

    def list_projects(self, principal: Principal | None = None) -> list[tuple[Project, Role | None]]:
        with self.store.session() as session:
            if principal is None:
                return [(p, None) for p in session.scalars(select(Project).order_by(Project.name))]
            rows = session.execute(
                select(Project, Membership.role)
                .join(Membership, Membership.project_id == Project.id)
                .where(Membership.user_id == principal.user_id)
                .order_by(Project.name)
            )
            return [(p, Role(r)) for p, r in rows]

    def get_project(self, principal: Principal, project_id: str) -> tuple[Project, Role]:
        if not storable(project_id):
            raise NotFound(f"no project with id {project_id!r}")
        with self.store.session() as session:
            row = session.execute(
                select(Project, Membership.role)
                .join(Membership, Membership.project_id == Project.id)
                .where(Membership.user_id == principal.user_id, Project.id == project_id)
            ).first()
        if row is None:
            raise NotFound(f"no project with id {project_id!r}")
        return row[0], Role(row[1])

    def set_retention(
        self, principal: Principal | None, days: int | None, *, project: str | None = None
    ) -> Project:
        """Days a project's traces are kept (None: the setting's default).

        The principal's own project (admin), or `project` by name (the local operator).
        """
        if principal is not None:
            principal.require(Role.admin, "change retention")
        if days is not None and not 1 <= days <= 36_500:
            raise UserError(
                "retention_days must be between 1 and 36500, or null for the default", param="days"
            )
        with self.store.write() as session:
            if principal is not None:
                target = session.get(Project, principal.project_id)
                if target is None:
                    raise NotFound("this key's project no longer exists")
            else:
                target = self.project_by_name(session, project or DEFAULT_PROJECT)
            target.retention_days = days
        return target

    # --- users and memberships ----------------------------------------------------------------

    def create_user(
        self,
        name: str,
        *,
        role: Role,
        project_id: str,
        email: str | None = None,
        creator: Principal | None = None,
    ) -> Member:
        """Create a user (or add an existing one) with `role` in the project."""
        check_name(name, "user")
        if creator is not None:
            creator.require(Role.admin, "manage users")
            if creator.project_id != project_id:
                raise NotFound("no such project")
        with self.store.write() as session:
            user = session.scalar(select(User).where(User.name == name))
            if user is None:
                user = User(name=name, email=email)
                session.add(user)
                session.flush()
            elif session.get(Membership, (user.id, project_id)) is not None:
                raise Conflict(f"user {name!r} is already a member of this project", param="name")
            session.add(Membership(user_id=user.id, project_id=project_id, role=role))
        return Member(user=user, role=role)

    def list_members(self, principal: Principal) -> list[Member]:
        principal.require(Role.admin, "list users")
        with self.store.session() as session:
            rows = session.execute(
                select(User, Membership.role)
                .join(Membership, Membership.user_id == User.id)
                .where(Membership.project_id == principal.project_id)
                .order_by(User.name)
            )
            return [Member(user=u, role=Role(r)) for u, r in rows]

    def _membership(self, session: Session, project_id: str, user_id: str) -> Membership:
        member = session.get(Membership, (user_id, project_id)) if storable(user_id) else None
        if member is None:
            raise NotFound(f"no user with id {user_id!r} in this project")
        return member

    def _admins_left(self, session: Session, project_id: str, excluding: str) -> int:
        count = session.scalar(
            select(func.count())
            .select_from(Membership)
            .where(
                Membership.project_id == project_id,
                Membership.role == Role.admin,
                Membership.user_id != excluding,
            )
        )
        return int(count or 0)

    def update_member(
        self, principal: Principal, user_id: str, *, role: Role | None = None, disabled: bool | None = None
    ) -> Member:
        principal.require(Role.admin, "manage users")
        with self.store.write() as session:
            member = self._membership(session, principal.project_id, user_id)
            user = session.get(User, user_id)
            assert user is not None  # guaranteed by the foreign key
            demoting = role is not None and role != Role.admin and member.role == Role.admin
            if (demoting or disabled) and self._admins_left(session, principal.project_id, user_id) == 0:
                raise Conflict("this is the project's last admin; make another user admin first")
            if role is not None:
                member.role = role
            if disabled is not None and disabled != user.disabled:
                # Disabling is account-wide: an admin of one project must not lock a user out of others.
                elsewhere = session.scalar(
                    select(func.count())
                    .select_from(Membership)
                    .where(Membership.user_id == user_id, Membership.project_id != principal.project_id)
                )
                if elsewhere:
                    raise Conflict(
                        f"user {user.name!r} also belongs to other projects; remove them from this one "
                        "instead (DELETE /api/users/{id})"
                    )
                user.disabled = disabled
            result = Member(user=user, role=Role(member.role))
        self.forget_cached()
        return result

    def remove_member(self, principal: Principal, user_id: str) -> None:
        principal.require(Role.admin, "manage users")
        with self.store.write() as session:
            member = self._membership(session, principal.project_id, user_id)
            if member.role == Role.admin and self._admins_left(session, principal.project_id, user_id) == 0:
                raise Conflict("this is the project's last admin; make another user admin first")
            session.delete(member)
            session.execute(
                update(ApiKey)
                .where(
                    ApiKey.user_id == user_id,
                    ApiKey.project_id == principal.project_id,
                    ApiKey.revoked_at.is_(None),
                )
                .values(revoked_at=utcnow())
            )
        self.forget_cached()

    # --- keys ---------------------------------------------------------------------------------

    def create_key(
        self,
        *,
        name: str,
        role: Role | None,
        creator: Principal | None,
        project: str | None = None,
        user: str | None = None,
        expires_at: datetime | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key and return it with its plaintext, which is never stored or shown again.

        `creator` None means the local operator (the CLI on the server's machine), who may do anything.
        `project` and `user` are names; they default to the creator's own (or `default` / `admin`).
        """
        name = check_key_name(name)
        if expires_at is not None and expires_at <= utcnow():
            raise UserError("expires_at must be in the future", param="expires_at")
        with self.store.write() as session:
            target_project = self._key_project(session, creator, project)
            # The creator's rights are checked before anything about the target user or project is
            # revealed: to an outsider an existing project looks like a missing one.
            if creator is not None:
                acting_admin = creator.role == Role.admin
                if target_project.id != creator.project_id:
                    # Another project: only an admin key whose user is admin there.
                    own = session.get(Membership, (creator.user_id, target_project.id))
                    if own is None:
                        raise NotFound(f"no project named {project!r}")
                    if not (acting_admin and Role(own.role) == Role.admin):
                        raise PermissionDenied("only an admin of that project may create keys in it")
                    ceiling = Role.admin
                else:
                    ceiling = creator.role
                if user not in (None, creator.user_name) and not acting_admin:
                    raise PermissionDenied("only an admin may create keys for other users")
                if role is not None and not ceiling.covers(role):
                    raise PermissionDenied(
                        "a key cannot have more rights than its creator's: "
                        f"yours is {ceiling}, asked for {role}"
                    )
                if not acting_admin:
                    expires_at = self._bounded_by_creator(session, creator, expires_at)
            target_user = self._key_user(session, creator, user)
            member = session.get(Membership, (target_user.id, target_project.id))
            if member is None:
                raise UserError(
                    f"user {target_user.name!r} is not a member of project {target_project.name!r}",
                    param="user",
                )
            if role is None:
                # Unnamed, a key gets the most it may: the user's role here, capped by the creator's.
                role = lowest(
                    Role(member.role),
                    creator.role if creator and creator.project_id == target_project.id else Role.admin,
                )
            if not Role(member.role).covers(role):
                raise PermissionDenied(
                    f"user {target_user.name!r} is {member.role} in {target_project.name!r}; "
                    f"a key cannot be {role}"
                )
            plaintext = generate_key()
            key = ApiKey(
                name=name,
                prefix=display_prefix(plaintext),
                hash=hash_key(plaintext),
                role=role,
                user_id=target_user.id,
                project_id=target_project.id,
                created_by_key_id=creator.key_id if creator else None,
                expires_at=expires_at,
            )
            session.add(key)
        return key, plaintext

    def _bounded_by_creator(
        self, session: Session, creator: Principal, expires_at: datetime | None
    ) -> datetime | None:
        """A non-admin key's own bounds bind the keys it makes: only an admin may lift them.

        Otherwise a key an admin limited could mint an unlimited one, and a key about to expire
        one that never does.
        """
        if any(v is not None for v in (creator.key_rpm, creator.key_tpm, creator.key_budget)):
            raise PermissionDenied(
                "this key has rate limits or a budget set by an admin, which a new key would escape; "
                "ask an admin to create the key"
            )
        parent = session.get(ApiKey, creator.key_id)
        ends = parent.expires_at if parent is not None else None
        if ends is None:
            return expires_at
        if expires_at is None:
            return ends  # unnamed, a key lives as long as its creator may
        if expires_at > ends:
            raise UserError(
                f"expires_at must not be later than the expiry of the key creating it ({ends.isoformat()})",
                param="expires_at",
            )
        return expires_at

    def _key_project(self, session: Session, creator: Principal | None, name: str | None) -> Project:
        if name is None:
            if creator is not None:
                project = session.get(Project, creator.project_id)
                if project is None:
                    raise NotFound("this key's project no longer exists")
                return project
            name = DEFAULT_PROJECT
        if creator is None:
            return self.project_by_name(session, name)
        project = session.scalar(select(Project).where(Project.name == name)) if storable(name) else None
        if project is None:
            raise NotFound(f"no project named {name!r}")
        return project

    def _key_user(self, session: Session, creator: Principal | None, name: str | None) -> User:
        if name is None:
            if creator is not None:
                found = session.get(User, creator.user_id)
            else:
                found = session.scalar(select(User).where(User.name == ADMIN_USER))
        else:
            found = session.scalar(select(User).where(User.name == name)) if storable(name) else None
        if found is None:
            raise NotFound(f"no user named {name or ADMIN_USER!r}; create one with `fmops users create`")
        return found

    def list_keys(
        self, principal: Principal | None, *, all_users: bool = False, project: str | None = None
    ) -> list[tuple[ApiKey, str, str]]:
        """Keys with their user and project names. Admins may list every key of their project."""
        query = (
            select(ApiKey, User.name, Project.name)
            .join(User, User.id == ApiKey.user_id)
            .join(Project, Project.id == ApiKey.project_id)
            .order_by(ApiKey.created_at)
        )
        if principal is not None:
            query = query.where(ApiKey.project_id == principal.project_id)
            if all_users:
                principal.require(Role.admin, "list other users' keys")
            else:
                query = query.where(ApiKey.user_id == principal.user_id)
        elif project is not None:
            query = query.where(Project.name == project)
        with self.store.session() as session:
            return [(k, u, p) for k, u, p in session.execute(query)]

    def revoke_key(self, principal: Principal | None, key_id: str) -> ApiKey:
        with self.store.write() as session:
            key = session.get(ApiKey, key_id) if storable(key_id) else None
            visible = key is not None and (
                principal is None
                or (
                    key.project_id == principal.project_id
                    and (key.user_id == principal.user_id or principal.role == Role.admin)
                )
            )
            if key is None or not visible:
                raise NotFound(f"no key with id {key_id!r}")
            if key.revoked_at is None:
                key.revoked_at = utcnow()
        self.forget_cached()
        return key

    # --- limits -------------------------------------------------------------------------------

    def set_key_limits(self, principal: Principal | None, key_id: str, changes: LimitChanges) -> ApiKey:
        """Change a key's rate limits and budget (admins of its project; None: the local operator)."""
        changes.check()
        if principal is not None:
            principal.require(Role.admin, "change limits")
        with self.store.write() as session:
            key = session.get(ApiKey, key_id)
            if key is None or (principal is not None and key.project_id != principal.project_id):
                raise NotFound(f"no key with id {key_id!r}")
            changes.apply(key)
        self.forget_cached()
        return key

    def set_project_limits(
        self, principal: Principal | None, changes: LimitChanges, *, project: str | None = None
    ) -> Project:
        """Change a project's limits: the principal's own (admin), or `project` by name (local operator)."""
        changes.check()
        if principal is not None:
            principal.require(Role.admin, "change limits")
        with self.store.write() as session:
            if principal is not None:
                target = session.get(Project, principal.project_id)
                if target is None:
                    raise NotFound("this key's project no longer exists")
            else:
                target = self.project_by_name(session, project or DEFAULT_PROJECT)
            changes.apply(target)
        self.forget_cached()
        return target

    # --- first start --------------------------------------------------------------------------

    def bootstrap(self, key_path: Path) -> str | None:
        """On an empty store: create the default project, the admin user and an admin key.

        The key is written to `key_path` (mode 0600) and returned; None when keys already exist.
        """
        try:
            with self.store.write() as session:
                if session.bind is not None and session.bind.dialect.name == "postgresql":
                    # Replicas starting at once take turns (SQLite's BEGIN IMMEDIATE already does this):
                    # otherwise each sees no key yet, and each makes one.
                    session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _BOOTSTRAP_LOCK_ID})
                if session.scalar(select(ApiKey.id).limit(1)) is not None:
                    return None
                project = session.scalar(select(Project).where(Project.name == DEFAULT_PROJECT))
                if project is None:
                    project = Project(name=DEFAULT_PROJECT)
                    session.add(project)
                user = session.scalar(select(User).where(User.name == ADMIN_USER))
                if user is None:
                    user = User(name=ADMIN_USER)
                    session.add(user)
                session.flush()
                if session.get(Membership, (user.id, project.id)) is None:
                    session.add(Membership(user_id=user.id, project_id=project.id, role=Role.admin))
                plaintext = generate_key()
                session.add(
                    ApiKey(
                        name="admin (first start)",
                        prefix=display_prefix(plaintext),
                        hash=hash_key(plaintext),
                        role=Role.admin,
                        user_id=user.id,
                        project_id=project.id,
                    )
                )
        except IntegrityError:
            return None  # another replica bootstrapped at the same moment
        write_secret(key_path, plaintext)
        return plaintext


def write_secret(path: Path, secret: str) -> None:
    """Write a secret readable by its owner only, replacing any earlier file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
