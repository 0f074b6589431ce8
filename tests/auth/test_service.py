"""AuthService on both backends: bootstrap, key verification, the rules for creating and revoking keys,
memberships and the last-admin guard, listing scopes and name validation."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from fmops.auth import DEFAULT_PROJECT, AuthService, Principal, Role
from fmops.auth.keys import generate_key
from fmops.auth.service import write_secret
from fmops.errors import AuthenticationError, Conflict, NotFound, PermissionDenied, UserError
from fmops.platform import Platform
from fmops.store import Store, utcnow
from fmops.store.models import ApiKey, Membership, Project, User

# --- helpers ----------------------------------------------------------------------------------


@dataclass
class World:
    """A bootstrapped store: the default project, its admin user and the first admin key."""

    auth: AuthService
    store: Store
    admin_key: str
    admin: Principal
    key_path: Path

    def add_user(self, name: str, role: Role, project: str = DEFAULT_PROJECT) -> str:
        """Add a user to a project as the operator; returns the user id."""
        with self.store.session() as session:
            project_id = self.auth.project_by_name(session, project).id
        return self.auth.create_user(name, role=role, project_id=project_id).user.id

    def key(self, user: str, role: Role, project: str = DEFAULT_PROJECT) -> tuple[ApiKey, str, Principal]:
        """A key made by the operator, and the principal it authenticates as."""
        key, plaintext = self.auth.create_key(
            name=f"{user}-{role}", role=role, creator=None, project=project, user=user
        )
        return key, plaintext, self.auth.authenticate(plaintext)

    def project(self, name: str, owner: Principal | None = None) -> str:
        return self.auth.create_project(name, owner=owner).id

    def stored_key(self, key_id: str) -> ApiKey:
        with self.store.session() as session:
            key = session.get(ApiKey, key_id)
        assert key is not None
        return key


@pytest.fixture
def world(platform: Platform, tmp_path: Path) -> World:
    key_path = tmp_path / "secrets" / "admin.key"
    admin_key = platform.auth.bootstrap(key_path)
    assert admin_key is not None
    return World(
        auth=platform.auth,
        store=platform.store,
        admin_key=admin_key,
        admin=platform.auth.authenticate(admin_key),
        key_path=key_path,
    )


# --- bootstrap --------------------------------------------------------------------------------

# --- bootstrap --------------------------------------------------------------------------------


def test_bootstrap_creates_default_project_admin_user_and_admin_key(
    platform: Platform, tmp_path: Path
) -> None:
    key_path = tmp_path / "new" / "folder" / "admin.key"
    plaintext = platform.auth.bootstrap(key_path)
    assert plaintext is not None
    assert plaintext.startswith("fmk-")
    assert len(plaintext) == 44

    principal = platform.auth.authenticate(plaintext)
    assert (principal.role, principal.project_name, principal.user_name) == (
        Role.admin,
        DEFAULT_PROJECT,
        "admin",
    )

    with platform.store.session() as session:
        projects = session.scalars(select(Project)).all()
        users = session.scalars(select(User)).all()
        memberships = session.scalars(select(Membership)).all()
        keys = session.scalars(select(ApiKey)).all()
    assert [p.name for p in projects] == [DEFAULT_PROJECT]
    assert [u.name for u in users] == ["admin"]
    assert [(m.user_id, m.project_id, m.role) for m in memberships] == [
        (users[0].id, projects[0].id, "admin")
    ]
    (key,) = keys
    assert key.role == "admin"
    # Stored hashed, with only a short display prefix.
    assert key.hash == hashlib.sha256(plaintext.encode()).hexdigest()
    assert key.prefix == plaintext[:12]
    assert plaintext not in (key.hash, key.prefix, key.name)

    # Written for its owner's eyes only, with no temporary file left behind.
    assert key_path.read_text() == f"{plaintext}\n"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert os.listdir(key_path.parent) == ["admin.key"]


def test_second_bootstrap_returns_none_and_keeps_the_first_key(platform: Platform, tmp_path: Path) -> None:
    first = platform.auth.bootstrap(tmp_path / "admin.key")
    assert first is not None
    assert platform.auth.bootstrap(tmp_path / "admin.key") is None
    assert platform.auth.bootstrap(tmp_path / "other.key") is None
    assert (tmp_path / "admin.key").read_text().strip() == first
    assert not (tmp_path / "other.key").exists()
    assert len(platform.auth.list_keys(None)) == 1
    assert platform.auth.authenticate(first).role == Role.admin


def test_bootstrap_after_operator_set_up_reuses_project_and_user(platform: Platform, tmp_path: Path) -> None:
    project = platform.auth.create_project(DEFAULT_PROJECT)
    platform.auth.create_user("admin", role=Role.engineer, project_id=project.id)
    plaintext = platform.auth.bootstrap(tmp_path / "admin.key")
    assert plaintext is not None
    with platform.store.session() as session:
        assert session.scalars(select(Project.id)).all() == [project.id]
    # The existing membership is kept, so the admin key is capped by it.
    assert platform.auth.authenticate(plaintext).role == Role.engineer


def test_concurrent_bootstraps_create_exactly_one_key(store: Store, tmp_path: Path) -> None:
    replicas = [AuthService(Store(store.url), cache_seconds=0) for _ in range(4)]
    barrier = threading.Barrier(len(replicas))
    results: list[str | None] = [None] * len(replicas)
    errors: list[BaseException] = []

    def start(i: int) -> None:
        try:
            barrier.wait()
            results[i] = replicas[i].bootstrap(tmp_path / f"admin-{i}.key")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(len(replicas))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for replica in replicas:
        replica.store.dispose()
    assert errors == []
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert len(list(tmp_path.glob("admin-*.key"))) == 1
    auth = AuthService(store, cache_seconds=0)
    assert len(auth.list_keys(None)) == 1
    assert auth.authenticate(winners[0]).role == Role.admin


def test_write_secret_replaces_a_world_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "admin.key"
    path.write_text("old\n")
    os.chmod(path, 0o644)
    stale = tmp_path / "admin.key.tmp"
    stale.write_text("left over from a crash\n")
    os.chmod(stale, 0o666)
    write_secret(path, "fmk-new")
    assert path.read_text() == "fmk-new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not stale.exists()


# --- authenticate -----------------------------------------------------------------------------

MALFORMED = [
    "' OR 1=1 --",
    "fmk-' OR 1=1 --",
    "fmk-' OR '1'='1' UNION SELECT hash FROM api_keys --",
    "fmk-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;",  # right length, one bad character
    "fmk-" + "a" * 39 + "\x00",
    "\x00" * 44,
    "fmk-\x00" + "a" * 39,
    "fmk-" + "a" * 10_000,
    "x" * 10_240,
    "fmk-" + "é" * 40,
    "fmk-" + "🔑" * 40,
    "fmk-" + "a" * 39 + "\n",
    "fmk-" + "a" * 41,
    "fmk-" + "a" * 39,
    "FMK-" + "a" * 40,
    "sk-" + "a" * 41,
    "Bearer fmk-" + "a" * 40,
    "fmk-" + "a" * 20 + " " + "a" * 19,
    "fmk-" + "\ud800" * 40,  # lone surrogates: not even encodable
]


def test_missing_malformed_and_unknown_keys_are_refused(world: World) -> None:
    for raw in (None, ""):
        with pytest.raises(AuthenticationError, match="missing API key") as info:
            world.auth.authenticate(raw)
        assert info.value.status_code == 401
    for raw in MALFORMED:
        with pytest.raises(AuthenticationError) as info:
            world.auth.authenticate(raw)
        assert info.value.status_code == 401
        assert "fmk-" in info.value.message, raw  # says what a key looks like
        assert raw not in info.value.message
    # A real key with anything around it is not the key.
    for raw in (f" {world.admin_key}", f"{world.admin_key}\n", f"{world.admin_key}\x00"):
        with pytest.raises(AuthenticationError):
            world.auth.authenticate(raw)
    # Well formed but unknown, even one character away from a real key.
    with pytest.raises(AuthenticationError, match="no such key"):
        world.auth.authenticate(generate_key())
    tweaked = world.admin_key[:-1] + ("A" if world.admin_key[-1] != "A" else "B")
    with pytest.raises(AuthenticationError, match="no such key"):
        world.auth.authenticate(tweaked)
    assert world.auth.authenticate(world.admin_key).role == Role.admin


def test_expired_key_is_refused(world: World) -> None:
    with pytest.raises(UserError, match="future") as info:
        world.auth.create_key(
            name="past", role=Role.consumer, creator=world.admin, expires_at=utcnow() - timedelta(minutes=1)
        )
    assert info.value.param == "expires_at"

    expires = utcnow() + timedelta(hours=1)
    key, plaintext = world.auth.create_key(
        name="short-lived", role=Role.admin, creator=world.admin, expires_at=expires
    )
    assert world.auth.authenticate(plaintext).key_id == key.id
    assert world.stored_key(key.id).expires_at == expires
    with world.store.write() as session:
        session.execute(
            update(ApiKey).where(ApiKey.id == key.id).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    with pytest.raises(AuthenticationError, match="expired"):
        world.auth.authenticate(plaintext)


def test_disabled_user_key_is_refused_and_works_again_when_enabled(world: World) -> None:
    bob = world.add_user("bob", Role.engineer)
    _, plaintext, _ = world.key("bob", Role.engineer)
    world.auth.update_member(world.admin, bob, disabled=True)
    with pytest.raises(AuthenticationError, match="no longer has access"):
        world.auth.authenticate(plaintext)
    world.auth.update_member(world.admin, bob, disabled=False)
    assert world.auth.authenticate(plaintext).user_id == bob


def test_principal_describes_the_key_and_use_is_recorded(world: World) -> None:
    bob = world.add_user("bob", Role.engineer)
    key, _, principal = world.key("bob", Role.consumer)
    assert (principal.key_id, principal.user_id, principal.user_name) == (key.id, bob, "bob")
    assert (principal.project_id, principal.project_name) == (world.admin.project_id, DEFAULT_PROJECT)
    assert principal.role == Role.consumer  # the key's own role, below the user's
    used = world.stored_key(key.id).last_used_at
    assert used is not None
    assert abs((utcnow() - used).total_seconds()) < 60


def test_role_is_capped_by_the_current_membership(world: World) -> None:
    bob = world.add_user("bob", Role.admin)
    _, plaintext, principal = world.key("bob", Role.admin)
    assert principal.role == Role.admin

    world.auth.update_member(world.admin, bob, role=Role.consumer)
    demoted = world.auth.authenticate(plaintext)
    assert demoted.role == Role.consumer
    with pytest.raises(PermissionDenied):
        demoted.require(Role.engineer, "register models")
    with pytest.raises(PermissionDenied):
        world.auth.list_members(demoted)
    with pytest.raises(PermissionDenied):
        world.auth.create_key(name="sneaky", role=Role.admin, creator=demoted)

    world.auth.update_member(world.admin, bob, role=Role.engineer)
    assert world.auth.authenticate(plaintext).role == Role.engineer


# --- create_key -------------------------------------------------------------------------------


def test_consumer_creates_consumer_key_for_itself(world: World) -> None:
    world.add_user("carol", Role.consumer)
    creator_key, _, carol = world.key("carol", Role.consumer)
    key, plaintext = world.auth.create_key(name="laptop", role=Role.consumer, creator=carol)
    made = world.auth.authenticate(plaintext)
    assert (made.user_name, made.project_name, made.role) == ("carol", DEFAULT_PROJECT, Role.consumer)
    assert world.stored_key(key.id).created_by_key_id == creator_key.id
    # Naming oneself explicitly is the same as not naming anyone.
    _, again = world.auth.create_key(name="laptop-2", role=Role.consumer, creator=carol, user="carol")
    assert world.auth.authenticate(again).user_name == "carol"


def test_key_never_has_more_rights_than_its_creator(world: World) -> None:
    # erin may hold any role; her keys below admin cannot hand out more than they have.
    world.add_user("erin", Role.admin)
    for creator_role, asked in (
        (Role.consumer, Role.engineer),
        (Role.consumer, Role.admin),
        (Role.engineer, Role.admin),
    ):
        _, _, creator = world.key("erin", creator_role)
        with pytest.raises(PermissionDenied, match="more rights than its creator"):
            world.auth.create_key(name="up", role=asked, creator=creator)
    assert len(world.auth.list_keys(None)) == 4  # the admin key and the three creators

    _, _, engineer = world.key("erin", Role.engineer)
    for role in (Role.engineer, Role.consumer):
        _, plaintext = world.auth.create_key(name=f"k-{role}", role=role, creator=engineer)
        assert world.auth.authenticate(plaintext).role == role


def test_non_admin_cannot_create_keys_for_other_users_nor_probe_them(world: World) -> None:
    world.add_user("eve", Role.engineer)
    world.add_user("frank", Role.consumer)
    world.project("hidden")
    world.add_user("ghost", Role.consumer, project="hidden")
    for role in (Role.consumer, Role.engineer):
        _, _, eve = world.key("eve", role)
        outcomes = set()
        for target in ("frank", "admin", "ghost", "nobody-at-all"):
            with pytest.raises(PermissionDenied, match="only an admin") as info:
                world.auth.create_key(name="for-you", role=Role.consumer, creator=eve, user=target)
            outcomes.add(info.value.message)
        # Existing members, users elsewhere and unknown names get the same answer.
        assert len(outcomes) == 1
    assert {u for _, u, _ in world.auth.list_keys(None)} == {"admin", "eve"}


def test_admin_creates_keys_for_members_up_to_their_role(world: World) -> None:
    world.add_user("frank", Role.engineer)
    _, plaintext = world.auth.create_key(name="f", role=Role.engineer, creator=world.admin, user="frank")
    assert world.auth.authenticate(plaintext).user_name == "frank"
    with pytest.raises(PermissionDenied, match="'frank' is engineer"):
        world.auth.create_key(name="f2", role=Role.admin, creator=world.admin, user="frank")
    with pytest.raises(PermissionDenied, match="'frank' is engineer"):
        world.auth.create_key(name="f3", role=Role.admin, creator=None, user="frank")


def test_key_for_unknown_or_non_member_user_is_refused(world: World) -> None:
    world.project("p2")
    world.add_user("dave", Role.admin, project="p2")
    for creator in (world.admin, None):
        with pytest.raises(UserError, match="'dave' is not a member of project 'default'") as info:
            world.auth.create_key(name="d", role=Role.consumer, creator=creator, user="dave")
        assert info.value.param == "user"
        with pytest.raises(NotFound, match="no user named 'nobody'"):
            world.auth.create_key(name="x", role=Role.consumer, creator=creator, user="nobody")
        with pytest.raises(NotFound, match="no project named 'nowhere'"):
            world.auth.create_key(name="x", role=Role.consumer, creator=creator, project="nowhere")
    assert len(world.auth.list_keys(None)) == 1


def test_keys_in_another_project_need_an_admin_key_whose_user_is_admin_there(world: World) -> None:
    world.project("p2", owner=world.admin)  # admin becomes p2's admin
    world.add_user("dave", Role.engineer, project="p2")
    _, plaintext = world.auth.create_key(
        name="cross", role=Role.engineer, creator=world.admin, project="p2", user="dave"
    )
    made = world.auth.authenticate(plaintext)
    assert (made.project_name, made.user_name, made.role) == ("p2", "dave", Role.engineer)
    _, own = world.auth.create_key(name="mine-there", role=Role.admin, creator=world.admin, project="p2")
    assert world.auth.authenticate(own).project_name == "p2"
    # An engineer key of the same user may not.
    _, _, engineer = world.key("admin", Role.engineer)
    with pytest.raises(PermissionDenied, match="only an admin of that project"):
        world.auth.create_key(name="x", role=Role.consumer, creator=engineer, project="p2")
    # Nor may an admin key in a project where its user is not admin.
    world.project("p4")
    world.add_user("admin", Role.consumer, project="p4")
    with pytest.raises(PermissionDenied, match="only an admin of that project"):
        world.auth.create_key(name="x", role=Role.consumer, creator=world.admin, project="p4")
    assert world.auth.list_keys(None, project="p4") == []


def test_outsiders_cannot_tell_an_existing_project_from_a_missing_one(world: World) -> None:
    world.project("secret")
    world.add_user("dave", Role.admin, project="secret")
    world.add_user("carol", Role.consumer)
    _, _, carol = world.key("carol", Role.consumer)
    for creator in (world.admin, carol):
        for user in (None, "dave", creator.user_name):
            messages = {}
            for project in ("secret", "no-such-project"):
                with pytest.raises(NotFound) as info:
                    world.auth.create_key(
                        name="probe", role=Role.consumer, creator=creator, project=project, user=user
                    )
                messages[project] = info.value.message.replace(repr(project), "<name>")
            assert messages["secret"] == messages["no-such-project"], (creator.user_name, user)
    assert world.auth.list_keys(None, project="secret") == []


def test_operator_may_create_any_key(world: World) -> None:
    world.project("p2")
    world.add_user("dave", Role.admin, project="p2")
    _, plaintext = world.auth.create_key(name="ops", role=Role.admin, creator=None, project="p2", user="dave")
    made = world.auth.authenticate(plaintext)
    assert (made.project_name, made.user_name, made.role) == ("p2", "dave", Role.admin)
    # With no project or user named: the default project's admin.
    _, default = world.auth.create_key(name="ops-2", role=Role.engineer, creator=None)
    made = world.auth.authenticate(default)
    assert (made.project_name, made.user_name, made.role) == (DEFAULT_PROJECT, "admin", Role.engineer)


def test_key_names_must_be_printable_and_every_key_differs(world: World) -> None:
    for name in ("", "   ", "a" * 101, "two\nlines", "tab\there", "nul\x00"):
        with pytest.raises(UserError, match="key name") as info:
            world.auth.create_key(name=name, role=Role.consumer, creator=world.admin)
        assert info.value.param == "name"
    key, _ = world.auth.create_key(name="  Ana's laptop 💻  ", role=Role.consumer, creator=world.admin)
    assert world.stored_key(key.id).name == "Ana's laptop 💻"
    made = {
        world.auth.create_key(name=f"k{i}", role=Role.consumer, creator=world.admin)[1] for i in range(10)
    }
    assert len(made) == 10


# --- revoke_key -------------------------------------------------------------------------------


def test_user_revokes_own_key_and_revoking_again_changes_nothing(world: World) -> None:
    world.add_user("carol", Role.consumer)
    _, carol_plain, carol = world.key("carol", Role.consumer)
    other, other_plain = world.auth.create_key(name="second", role=Role.consumer, creator=carol)
    revoked = world.auth.revoke_key(carol, other.id)
    assert revoked.revoked_at is not None
    with pytest.raises(AuthenticationError, match="revoked"):
        world.auth.authenticate(other_plain)
    again = world.auth.revoke_key(carol, other.id)
    assert again.revoked_at == world.stored_key(other.id).revoked_at == revoked.revoked_at
    # Revoking one key leaves the user's other keys working.
    assert world.auth.authenticate(carol_plain).user_name == "carol"


def test_admin_revokes_other_users_keys_in_its_project_only(world: World) -> None:
    world.add_user("carol", Role.consumer)
    key, plaintext, _ = world.key("carol", Role.consumer)
    world.auth.revoke_key(world.admin, key.id)
    with pytest.raises(AuthenticationError, match="revoked"):
        world.auth.authenticate(plaintext)

    world.project("p2")
    world.add_user("dave", Role.admin, project="p2")
    elsewhere, elsewhere_plain, _ = world.key("dave", Role.admin, project="p2")
    with pytest.raises(NotFound, match="no key with id"):
        world.auth.revoke_key(world.admin, elsewhere.id)
    assert world.auth.authenticate(elsewhere_plain).user_name == "dave"


def test_non_admin_cannot_revoke_another_users_key(world: World) -> None:
    world.add_user("carol", Role.engineer)
    world.add_user("frank", Role.consumer)
    frank_key, frank_plain, _ = world.key("frank", Role.consumer)
    for role in (Role.consumer, Role.engineer):
        _, _, carol = world.key("carol", role)
        for key_id in (frank_key.id, world.admin.key_id):
            with pytest.raises(NotFound, match="no key with id"):
                world.auth.revoke_key(carol, key_id)
    assert world.auth.authenticate(frank_plain).user_name == "frank"
    assert world.auth.authenticate(world.admin_key).role == Role.admin


def test_unknown_ids_and_names_are_not_found(world: World) -> None:
    for key_id in ("nope", "", "' OR 1=1 --", "0" * 32, "x" * 5000, "ünï"):
        with pytest.raises(NotFound):
            world.auth.revoke_key(world.admin, key_id)
        with pytest.raises(NotFound):
            world.auth.revoke_key(None, key_id)
    # PostgreSQL refuses NUL characters even in a query, and neither backend can encode a lone
    # surrogate; such ids and names cannot exist, so they are simply not found (never a 500).
    for bad in ("\x00", "admin\x00", "default\x00", "\ud800", "fmk-\udfff"):
        with pytest.raises(NotFound):
            world.auth.revoke_key(world.admin, bad)
        with pytest.raises(NotFound):
            world.auth.revoke_key(None, bad)
        with pytest.raises(NotFound):
            world.auth.get_project(world.admin, bad)
        with pytest.raises(NotFound):
            world.auth.update_member(world.admin, bad, role=Role.consumer)
        with pytest.raises(NotFound):
            world.auth.remove_member(world.admin, bad)
        for creator in (world.admin, None):
            with pytest.raises(NotFound):
                world.auth.create_key(name="x", role=Role.consumer, creator=creator, project=bad)
            with pytest.raises(NotFound):
                world.auth.create_key(name="x", role=Role.consumer, creator=creator, user=bad)
        with world.store.session() as session, pytest.raises(NotFound):
            world.auth.project_by_name(session, bad)
    assert len(world.auth.list_keys(None)) == 1
    assert world.auth.authenticate(world.admin_key).role == Role.admin


def test_revocation_applies_at_once_despite_the_key_cache(world: World) -> None:
    cached = AuthService(world.store, cache_seconds=60)
    world.add_user("carol", Role.consumer)
    key, plaintext, _ = world.key("carol", Role.consumer)
    assert cached.authenticate(plaintext).user_name == "carol"
    cached.revoke_key(None, key.id)
    with pytest.raises(AuthenticationError, match="revoked"):
        cached.authenticate(plaintext)


# --- memberships --------------------------------------------------------------------------------


def test_last_admin_cannot_be_demoted_disabled_or_removed(world: World) -> None:
    admin_id = world.admin.user_id
    with pytest.raises(Conflict, match="last admin"):
        world.auth.update_member(world.admin, admin_id, role=Role.engineer)
    with pytest.raises(Conflict, match="last admin"):
        world.auth.update_member(world.admin, admin_id, disabled=True)
    with pytest.raises(Conflict, match="last admin"):
        world.auth.remove_member(world.admin, admin_id)
    assert world.auth.authenticate(world.admin_key).role == Role.admin
    # Keeping the admin role is not a demotion.
    assert world.auth.update_member(world.admin, admin_id, role=Role.admin).role == Role.admin


def test_an_admin_can_step_down_once_another_admin_exists(world: World) -> None:
    bob = world.add_user("bob", Role.engineer)
    world.auth.update_member(world.admin, bob, role=Role.admin)
    member = world.auth.update_member(world.admin, world.admin.user_id, role=Role.engineer)
    assert member.role == Role.engineer
    assert world.auth.authenticate(world.admin_key).role == Role.engineer
    _, _, bob_admin = world.key("bob", Role.admin)
    with pytest.raises(Conflict, match="last admin"):
        world.auth.remove_member(bob_admin, bob)


def test_removing_a_member_revokes_their_keys_in_that_project_only(world: World) -> None:
    bob = world.add_user("bob", Role.engineer)
    world.project("p2")
    world.add_user("bob", Role.consumer, project="p2")
    key1, plain1, _ = world.key("bob", Role.engineer)
    key2, plain2, _ = world.key("bob", Role.consumer)
    _, elsewhere, _ = world.key("bob", Role.consumer, project="p2")

    world.auth.remove_member(world.admin, bob)

    for key_id, plaintext in ((key1.id, plain1), (key2.id, plain2)):
        assert world.stored_key(key_id).revoked_at is not None
        with pytest.raises(AuthenticationError):
            world.auth.authenticate(plaintext)
    assert world.auth.authenticate(elsewhere).project_name == "p2"
    assert "bob" not in [m.user.name for m in world.auth.list_members(world.admin)]
    # Adding bob back does not bring the old keys back.
    world.add_user("bob", Role.engineer)
    with pytest.raises(AuthenticationError, match="revoked"):
        world.auth.authenticate(plain1)


def test_only_admins_manage_members_and_only_of_their_project(world: World) -> None:
    frank = world.add_user("frank", Role.consumer)
    world.add_user("eve", Role.engineer)
    _, _, eve = world.key("eve", Role.engineer)
    with pytest.raises(PermissionDenied):
        world.auth.update_member(eve, frank, role=Role.admin)
    with pytest.raises(PermissionDenied):
        world.auth.remove_member(eve, frank)
    with pytest.raises(PermissionDenied):
        world.auth.create_user("gina", role=Role.consumer, project_id=eve.project_id, creator=eve)
    with pytest.raises(PermissionDenied):
        world.auth.list_members(eve)

    p2 = world.project("p2")
    dave = world.add_user("dave", Role.consumer, project="p2")
    with pytest.raises(NotFound):
        world.auth.update_member(world.admin, dave, role=Role.admin)
    with pytest.raises(NotFound):
        world.auth.remove_member(world.admin, dave)
    with pytest.raises(NotFound):
        world.auth.create_user("gina", role=Role.consumer, project_id=p2, creator=world.admin)


def test_users_have_one_role_per_project(world: World) -> None:
    member = world.auth.create_user(
        "gina", role=Role.engineer, project_id=world.admin.project_id, creator=world.admin, email="g@x.io"
    )
    assert (member.user.name, member.user.email, member.role) == ("gina", "g@x.io", Role.engineer)
    assert [(m.user.name, m.role) for m in world.auth.list_members(world.admin)] == [
        ("admin", Role.admin),
        ("gina", Role.engineer),
    ]
    with pytest.raises(Conflict, match="already a member"):
        world.add_user("gina", Role.consumer)

    world.project("p2")
    assert world.add_user("gina", Role.admin, project="p2") == member.user.id  # the same user, added
    _, _, here = world.key("gina", Role.engineer)
    _, _, there = world.key("gina", Role.admin, project="p2")
    assert (here.role, there.role) == (Role.engineer, Role.admin)
    with pytest.raises(PermissionDenied):
        world.key("gina", Role.admin)


# --- list_keys and projects -------------------------------------------------------------------


def test_list_keys_is_scoped_to_the_caller(world: World) -> None:
    world.project("p2", owner=world.admin)
    world.add_user("carol", Role.consumer)
    world.add_user("frank", Role.engineer)
    carol_key, _, carol = world.key("carol", Role.consumer)
    extra, _ = world.auth.create_key(name="carol-2", role=Role.consumer, creator=carol)
    frank_key, _, _ = world.key("frank", Role.engineer)
    p2_key, _ = world.auth.create_key(name="p2", role=Role.admin, creator=None, project="p2")

    def ids(rows: list[tuple[ApiKey, str, str]]) -> set[str]:
        return {k.id for k, _, _ in rows}

    assert ids(world.auth.list_keys(carol)) == {carol_key.id, extra.id}
    assert all(u == "carol" and p == DEFAULT_PROJECT for _, u, p in world.auth.list_keys(carol))
    with pytest.raises(PermissionDenied):
        world.auth.list_keys(carol, all_users=True)
    assert ids(world.auth.list_keys(world.admin)) == {world.admin.key_id}
    assert ids(world.auth.list_keys(world.admin, all_users=True)) == {
        world.admin.key_id,
        carol_key.id,
        extra.id,
        frank_key.id,
    }
    # The operator sees every project, or one.
    assert len(world.auth.list_keys(None)) == 5
    assert ids(world.auth.list_keys(None, project="p2")) == {p2_key.id}
    # A principal's own project always wins over a `project` argument.
    assert p2_key.id not in ids(world.auth.list_keys(world.admin, all_users=True, project="p2"))
    # Listings carry the hash and a prefix, never the key.
    for key, _, _ in world.auth.list_keys(None):
        assert world.admin_key not in {str(v) for v in vars(key).values()}


def test_creating_a_project_makes_the_creator_its_admin(world: World) -> None:
    project_id = world.project("research", owner=world.admin)
    hidden = world.project("hidden")
    assert [(p.name, r) for p, r in world.auth.list_projects(world.admin)] == [
        (DEFAULT_PROJECT, Role.admin),
        ("research", Role.admin),
    ]
    project, role = world.auth.get_project(world.admin, project_id)
    assert (project.name, role) == ("research", Role.admin)
    # Projects it is not in stay invisible; the operator sees them all.
    with pytest.raises(NotFound):
        world.auth.get_project(world.admin, hidden)
    assert [p.name for p, _ in world.auth.list_projects(None)] == [DEFAULT_PROJECT, "hidden", "research"]


def test_only_admins_create_projects_or_set_retention(world: World) -> None:
    world.add_user("eve", Role.engineer)
    _, _, eve = world.key("eve", Role.engineer)
    with pytest.raises(PermissionDenied):
        world.auth.create_project("mine", owner=eve)
    with pytest.raises(Conflict, match="already exists"):
        world.auth.create_project(DEFAULT_PROJECT)
    with pytest.raises(Conflict):
        world.auth.create_project(DEFAULT_PROJECT, owner=world.admin)
    assert [p.name for p, _ in world.auth.list_projects(None)] == [DEFAULT_PROJECT]
    # Retention is an admin setting too, within bounds.
    with pytest.raises(PermissionDenied):
        world.auth.set_retention(eve, 30)
    for bad in (0, -1, 36_501):
        with pytest.raises(UserError, match="retention_days"):
            world.auth.set_retention(world.admin, bad)
    assert world.auth.set_retention(world.admin, 30).retention_days == 30
    assert world.auth.set_retention(world.admin, None).retention_days is None


INVALID_NAMES = [
    "",
    "-leading-dash",
    ".hidden",
    "_under",
    "with space",
    "slash/inside",
    "back\\slash",
    "semi;colon",
    "' OR 1=1 --",
    "quote'",
    "nul\x00byte",
    "new\nline",
    "trailing\n",
    "ünïcode",
    "a" * 101,
    "[bold]markup[/bold]",
]


def test_project_and_user_names_are_validated(world: World) -> None:
    for name in INVALID_NAMES:
        with pytest.raises(UserError, match="project name") as info:
            world.auth.create_project(name)
        assert info.value.param == "name"
        with pytest.raises(UserError, match="user name"):
            world.auth.create_user(name, role=Role.consumer, project_id=world.admin.project_id)
    assert [p.name for p, _ in world.auth.list_projects(None)] == [DEFAULT_PROJECT]
    assert [m.user.name for m in world.auth.list_members(world.admin)] == ["admin"]

    for name in ("a", "7", "A.b_c-1", "team-ml.v2", "a" * 100):
        project = world.auth.create_project(name)
        with world.store.session() as session:
            assert world.auth.project_by_name(session, name).id == project.id


def test_unnamed_role_defaults_to_the_users_role_capped_by_the_creator(world: World) -> None:
    world.add_user("carol", Role.consumer)
    world.add_user("erin", Role.admin)
    for_carol, _ = world.auth.create_key(name="c", role=None, creator=world.admin, user="carol")
    assert for_carol.role == Role.consumer
    _, _, engineer = world.key("admin", Role.engineer)
    own, _ = world.auth.create_key(name="mine", role=None, creator=engineer)
    assert own.role == Role.engineer  # the admin user's role, capped by the engineer key
    for_erin, _ = world.auth.create_key(name="e", role=None, creator=None, user="erin")
    assert for_erin.role == Role.admin


def test_an_admin_cannot_disable_a_user_who_belongs_to_other_projects(world: World) -> None:
    dave = world.add_user("dave", Role.engineer)
    world.project("other")
    world.add_user("dave", Role.consumer, project="other")
    with pytest.raises(Conflict, match="other projects"):
        world.auth.update_member(world.admin, dave, disabled=True)
    world.auth.remove_member(world.admin, dave)  # what the message suggests instead
    _, _, elsewhere = world.key("dave", Role.consumer, project="other")
    assert elsewhere.project_name == "other"
