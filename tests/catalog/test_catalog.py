"""The model catalog on both backends: changes, rules, encrypted credentials and upstream checks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from fmops.catalog import Catalog, ModelEntry, ModelSpec, ModelUpdate, public_view
from fmops.errors import Conflict, NotFound, UserError
from fmops.platform import Platform
from fmops.providers.base import JSON, Capabilities, Provider
from fmops.providers.registry import register, unregister
from fmops.secrets import SecretBox
from fmops.store.models import CatalogModel

PUBLIC_URL = "https://8.8.8.8/v1"  # an IP literal: no DNS needed
BUILTIN = ModelEntry(alias="builtin-tiny", provider="openai", provider_model="tiny")


class LocalEngine(Provider):
    """Stands for a local engine (llama.cpp, transformers): it loads files named by `model`."""

    name = "test-local"
    capabilities: ClassVar[Capabilities] = Capabilities(local=True)

    async def chat(self, body: JSON, *, timeout: float) -> JSON:
        raise NotImplementedError


@pytest.fixture(autouse=True)
def _fixed_builtins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr("fmops.catalog.service.builtin_models", lambda: [BUILTIN])
    register(LocalEngine)
    yield
    unregister(LocalEngine.name)


@pytest.fixture
def project_id(platform: Platform) -> str:
    platform.auth.bootstrap(platform.settings.admin_key_path)
    with platform.store.session() as session:
        return platform.auth.project_by_name(session, "default").id


def spec(alias: str, **changes: Any) -> ModelSpec:
    fields: dict[str, Any] = {
        "alias": alias,
        "provider": "openai",
        "model": f"{alias}-upstream",
        "base_url": PUBLIC_URL,
    }
    fields.update(changes)
    return ModelSpec(**fields)


def raw_row(platform: Platform, project_id: str, alias: str) -> CatalogModel | None:
    with platform.store.session() as session:
        return session.scalar(
            select(CatalogModel).where(CatalogModel.project_id == project_id, CatalogModel.alias == alias)
        )


def test_add_list_get_update_remove(platform: Platform, project_id: str) -> None:
    catalog = platform.catalog
    added = catalog.add(
        project_id,
        spec(
            "gpt",
            context_window=8192,
            input_price=0.15,
            output_price=0.6,
            capabilities={"tools": True},
            timeout_seconds=30,
            max_retries=1,
            options={"organization": "acme"},
            license="proprietary",
        ),
    )
    assert added.id is not None
    assert not added.builtin
    assert added.created_at is not None
    assert added.base_url == PUBLIC_URL.rstrip("/")

    models = catalog.models(project_id)
    assert set(models) == {"gpt", "builtin-tiny"}
    got = catalog.get(project_id, "gpt")
    assert (got.provider, got.provider_model, got.context_window) == ("openai", "gpt-upstream", 8192)
    assert (got.input_price, got.output_price, got.max_retries, got.timeout_seconds) == (0.15, 0.6, 1, 30)
    assert got.capabilities == {"tools": True}
    assert got.options == {"organization": "acme"}
    assert got.cost(1_000_000, 1_000_000) == pytest.approx(0.75)

    updated = catalog.update(
        project_id,
        "gpt",
        ModelUpdate(context_window=4096, output_price=1.0, max_retries=0, cache_ttl_seconds=60),
    )
    assert (updated.context_window, updated.output_price, updated.max_retries) == (4096, 1.0, 0)
    assert updated.cache_ttl_seconds == 60
    assert updated.input_price == 0.15  # untouched
    assert catalog.get(project_id, "gpt").context_window == 4096
    assert catalog.update(project_id, "gpt", ModelUpdate(cache_ttl_seconds=0)).cache_ttl_seconds is None

    catalog.remove(project_id, "gpt")
    assert set(catalog.models(project_id)) == {"builtin-tiny"}
    with pytest.raises(NotFound) as caught:
        catalog.get(project_id, "gpt")
    assert "builtin-tiny" in caught.value.message  # the message lists what exists
    with pytest.raises(NotFound):
        catalog.remove(project_id, "gpt")
    with pytest.raises(NotFound):
        catalog.update(project_id, "gpt", ModelUpdate(max_retries=1))


def test_projects_do_not_see_each_others_models(platform: Platform, project_id: str) -> None:
    other = platform.auth.create_project("other-team").id
    platform.catalog.add(project_id, spec("mine"))
    assert "mine" not in platform.catalog.models(other)
    with pytest.raises(NotFound):
        platform.catalog.get(other, "mine")
    platform.catalog.add(other, spec("mine"))  # the same alias is free in another project


def test_builtins_cannot_be_removed_changed_or_shadowed(platform: Platform, project_id: str) -> None:
    catalog = platform.catalog
    assert catalog.get(project_id, "builtin-tiny").builtin
    with pytest.raises(UserError, match="built-in"):
        catalog.remove(project_id, "builtin-tiny")
    with pytest.raises(UserError, match="built-in"):
        catalog.update(project_id, "builtin-tiny", ModelUpdate(max_retries=0))
    with pytest.raises(Conflict, match="built-in"):
        catalog.add(project_id, spec("builtin-tiny"))
    assert catalog.get(project_id, "builtin-tiny") == BUILTIN


def test_duplicate_alias_is_409(platform: Platform, project_id: str) -> None:
    platform.catalog.add(project_id, spec("dup"))
    with pytest.raises(Conflict) as caught:
        platform.catalog.add(project_id, spec("dup", model="another"))
    assert caught.value.status_code == 409
    assert "already exists" in caught.value.message
    assert platform.catalog.get(project_id, "dup").provider_model == "dup-upstream"


def test_fallbacks_must_exist(platform: Platform, project_id: str) -> None:
    catalog = platform.catalog
    with pytest.raises(UserError, match="'ghost' is not a known model"):
        catalog.add(project_id, spec("primary", fallbacks=["ghost"]))
    with pytest.raises(UserError, match="own fallback"):
        catalog.add(project_id, spec("selfish", fallbacks=["selfish"]))
    catalog.add(project_id, spec("backup"))
    primary = catalog.add(project_id, spec("primary", fallbacks=["backup", "builtin-tiny"]))
    assert primary.fallbacks == ("backup", "builtin-tiny")
    with pytest.raises(UserError, match="ghost"):
        catalog.update(project_id, "primary", ModelUpdate(fallbacks=["ghost"]))
    with pytest.raises(UserError, match="primary"):
        catalog.update(project_id, "primary", ModelUpdate(fallbacks=["primary"]))
    assert catalog.update(project_id, "primary", ModelUpdate(fallbacks=[])).fallbacks == ()


def test_unknown_provider_is_refused(platform: Platform, project_id: str) -> None:
    with pytest.raises(UserError, match="unknown provider 'nope'"):
        platform.catalog.add(project_id, spec("x", provider="nope"))


def test_api_key_is_stored_encrypted(platform: Platform, project_id: str) -> None:
    secret = "sk-live-0123456789abcdef"
    entry = platform.catalog.add(project_id, spec("keyed", api_key=SecretStr(secret)))
    assert entry.api_key == secret
    assert secret not in repr(entry)
    row = raw_row(platform, project_id, "keyed")
    assert row is not None
    assert row.api_key_encrypted is not None
    assert row.api_key_encrypted != secret
    assert secret not in row.api_key_encrypted
    assert SecretBox.from_settings(platform.settings).decrypt(row.api_key_encrypted) == secret
    view = public_view(platform.catalog.get(project_id, "keyed"))
    assert view["api_key_set"] is True
    assert secret not in str(view)

    # A fresh catalog (another replica, a restart) reads it back with the same secret key.
    fresh = Catalog(platform.store, platform.settings, SecretBox.from_settings(platform.settings))
    assert fresh.get(project_id, "keyed").api_key == secret

    platform.catalog.update(project_id, "keyed", ModelUpdate(api_key=SecretStr("sk-rotated-987654321")))
    assert platform.catalog.get(project_id, "keyed").api_key == "sk-rotated-987654321"
    assert platform.catalog.add(project_id, spec("keyless")).api_key is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:8000/v1", "loopback or private"),
        ("http://192.168.0.10/v1", "loopback or private"),
        ("http://[::1]:8000/v1", "loopback or private"),
        ("http://169.254.169.254/latest", "link-local"),
        ("http://metadata.google.internal/", "metadata"),
        ("file:///etc/passwd", "http:// or https://"),
        ("https://user:pw@8.8.8.8/v1", "credentials"),
        ("https:///v1", "no host"),
        ("http://0.0.0.0:8000/v1", "reserved"),
    ],
)
def test_api_refuses_internal_upstreams(platform: Platform, project_id: str, url: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as caught:
        platform.catalog.add(project_id, spec("ssrf", base_url=url))
    assert caught.value.param == "base_url"
    assert raw_row(platform, project_id, "ssrf") is None


def test_operator_and_allow_private_may_use_private_upstreams(platform: Platform, project_id: str) -> None:
    assert platform.catalog.add(project_id, spec("local", base_url="http://127.0.0.1:8080/v1/"), trusted=True)
    assert platform.catalog.get(project_id, "local").base_url == "http://127.0.0.1:8080/v1"
    assert platform.catalog.add(project_id, spec("local6", base_url="http://[::1]:11434/v1"), trusted=True)
    with pytest.raises(UserError, match="link-local"):  # never, not even for the operator
        platform.catalog.add(project_id, spec("meta", base_url="http://169.254.169.254/"), trusted=True)

    allowing = platform.settings.model_copy(update={"upstream_allow_private": True})
    catalog = Catalog(platform.store, allowing, SecretBox.from_settings(allowing))
    assert (
        catalog.add(project_id, spec("lan", base_url="http://10.0.0.5/v1")).base_url == "http://10.0.0.5/v1"
    )
    with pytest.raises(UserError, match="link-local"):
        catalog.add(project_id, spec("meta", base_url="http://169.254.169.254/"))


def test_changing_base_url_needs_the_key_again(platform: Platform, project_id: str) -> None:
    catalog = platform.catalog
    catalog.add(project_id, spec("moving", api_key=SecretStr("sk-for-host-one-123")))
    with pytest.raises(UserError, match="requires api_key") as caught:
        catalog.update(project_id, "moving", ModelUpdate(base_url="https://1.1.1.1/v1"))
    assert caught.value.param == "api_key"
    assert catalog.get(project_id, "moving").base_url == PUBLIC_URL
    with pytest.raises(UserError, match="loopback or private"):
        catalog.update(
            project_id, "moving", ModelUpdate(base_url="http://10.0.0.1/v1", api_key=SecretStr("sk-two"))
        )
    moved = catalog.update(
        project_id,
        "moving",
        ModelUpdate(base_url="https://1.1.1.1/v1", api_key=SecretStr("sk-for-host-two-456")),
    )
    assert (moved.base_url, moved.api_key) == ("https://1.1.1.1/v1", "sk-for-host-two-456")
    # The same URL again (as sent, or as stored) is no move, and needs no key.
    for same in ("https://1.1.1.1/v1", "https://1.1.1.1/v1/"):
        unchanged = catalog.update(project_id, "moving", ModelUpdate(base_url=same, max_retries=0))
        assert (unchanged.base_url, unchanged.api_key) == ("https://1.1.1.1/v1", "sk-for-host-two-456")


def test_local_files_outside_the_models_folder_are_refused_over_the_api(
    platform: Platform, project_id: str, tmp_path: Path
) -> None:
    catalog = platform.catalog
    models_dir = platform.settings.home / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    outside = tmp_path / "elsewhere.gguf"
    outside.write_bytes(b"GGUF")
    (models_dir / "escape.gguf").symlink_to(outside)
    for path in (
        "/etc/passwd",
        str(outside),
        "../../elsewhere.gguf",
        "~/model.gguf",
        "escape.gguf/../../x.gguf",
    ):
        with pytest.raises(UserError, match="must live under") as caught:
            catalog.add(project_id, ModelSpec(alias="local", provider="test-local", model=path))
        assert caught.value.param == "model"
    with pytest.raises(UserError, match="must live under"):
        catalog.add(
            project_id, ModelSpec(alias="local", provider="test-local", model=str(models_dir / "escape.gguf"))
        )

    inside = catalog.add(
        project_id, ModelSpec(alias="inside", provider="test-local", model=str(models_dir / "m.gguf"))
    )
    assert inside.provider_model.endswith("m.gguf")
    assert catalog.add(project_id, ModelSpec(alias="relative", provider="test-local", model="sub/m.gguf"))
    assert catalog.add(project_id, ModelSpec(alias="hub", provider="test-local", model="smollm2"))
    # The operator's CLI may load a file anywhere.
    assert catalog.add(
        project_id, ModelSpec(alias="anywhere", provider="test-local", model=str(outside)), trusted=True
    )
