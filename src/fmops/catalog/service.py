"""The model catalog: built-in models plus each project's own, by alias.

Lookups are cached for `model_cache_seconds` (changes made here apply at once on this server, and
within that time on other replicas). Provider credentials are stored encrypted and never leave
the server except towards the upstream they were configured for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints
from sqlalchemy import select

from fmops.catalog.builtin import builtin_models
from fmops.catalog.entry import ModelEntry
from fmops.errors import Conflict, NotFound, UserError
from fmops.logs import remember_secret
from fmops.providers.base import STORED_OPTION
from fmops.providers.generation import generation_of
from fmops.providers.registry import get_provider_class
from fmops.providers.urls import check_upstream_url
from fmops.secrets import SecretBox
from fmops.settings import Settings
from fmops.store import Store
from fmops.store.models import CatalogModel, Endpoint

Alias = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/\-]*$")
]
OptionValue = str | int | float | bool


class ModelSpec(BaseModel):
    """What an engineer gives to add a model."""

    model_config = ConfigDict(extra="forbid")

    alias: Alias = Field(description="The name callers use as `model`")
    provider: str = Field(
        min_length=1, max_length=50, description="openai, anthropic, llamacpp, transformers…"
    )
    model: str = Field(min_length=1, max_length=500, description="The provider-side model id or file")
    base_url: str | None = Field(None, max_length=500)
    api_key: SecretStr | None = Field(None, description="Stored encrypted; never shown again")
    context_window: int | None = Field(None, ge=1, le=100_000_000)
    input_price: float = Field(0.0, ge=0, le=1_000_000, description="Currency per 1M input tokens")
    output_price: float = Field(0.0, ge=0, le=1_000_000, description="Currency per 1M output tokens")
    capabilities: dict[str, bool] = Field(default_factory=dict)
    fallbacks: list[Alias] = Field(default_factory=list, max_length=10)
    timeout_seconds: float = Field(60.0, gt=0, le=3600)
    max_retries: int = Field(2, ge=0, le=10)
    cache_ttl_seconds: int | None = Field(None, ge=1, le=30 * 86400, description="Cache identical requests")
    options: dict[str, OptionValue] = Field(default_factory=dict, max_length=50)
    license: str | None = Field(None, max_length=100)


class ModelUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str | None = Field(None, max_length=500)
    api_key: SecretStr | None = None
    context_window: int | None = Field(None, ge=1, le=100_000_000)
    input_price: float | None = Field(None, ge=0, le=1_000_000)
    output_price: float | None = Field(None, ge=0, le=1_000_000)
    fallbacks: list[Alias] | None = Field(None, max_length=10)
    timeout_seconds: float | None = Field(None, gt=0, le=3600)
    max_retries: int | None = Field(None, ge=0, le=10)
    cache_ttl_seconds: int | None = Field(None, ge=0, le=30 * 86400, description="0 turns caching off")


class Catalog:
    def __init__(self, store: Store, settings: Settings, secrets: SecretBox) -> None:
        self.store = store
        self.settings = settings
        self.secrets = secrets
        self._builtins: dict[str, ModelEntry] | None = None
        self._cache: dict[str, tuple[float, dict[str, ModelEntry]]] = {}
        self._lock = threading.Lock()

    # --- reading --------------------------------------------------------------------------------

    def builtins(self) -> dict[str, ModelEntry]:
        if self._builtins is None:
            self._builtins = {m.alias: m for m in builtin_models()}
        return self._builtins

    def _entry(self, row: CatalogModel) -> ModelEntry:
        api_key = self.secrets.decrypt(row.api_key_encrypted) if row.api_key_encrypted else None
        if api_key:
            remember_secret(api_key)  # masked in every message, log line and span from now on
        return ModelEntry(
            id=row.id,
            project_id=row.project_id,
            alias=row.alias,
            provider=row.provider,
            provider_model=row.provider_model,
            base_url=row.base_url,
            api_key=api_key,
            context_window=row.context_window,
            input_price=row.input_price,
            output_price=row.output_price,
            capabilities=dict(row.capabilities or {}),
            fallbacks=tuple(row.fallbacks or ()),
            timeout_seconds=row.timeout_seconds,
            max_retries=row.max_retries,
            cache_ttl_seconds=row.cache_ttl_seconds,
            options=dict(row.options or {}),
            license=row.license,
            created_at=row.created_at,
            fetch=self._fetcher(row.options.get(STORED_OPTION)) if row.options else None,
        )

    def _fetcher(self, text: Any) -> Callable[[str], Path | None] | None:
        """For a model whose files are in the artifact store (`options.stored`, JSON text): a function
        giving the local copy of one of them (fetched on first use by the engine that loads it, once
        per machine)."""
        try:
            stored = orjson.loads(text) if isinstance(text, str) else None
        except orjson.JSONDecodeError:
            return None  # the engine then names the missing file
        if not isinstance(stored, dict) or not stored:
            return None
        settings = self.settings

        def fetch(option: str) -> Path | None:
            from fmops.artifacts import ArtifactStore, cache_dir, stored_copy  # fsspec: only here

            entry = stored.get(option)
            if not isinstance(entry, dict):
                return None
            return stored_copy(ArtifactStore.from_settings(settings), entry, cache_dir(settings))

        return fetch

    def cached_models(self, project_id: str) -> dict[str, ModelEntry] | None:
        """The project's models if looked up recently, without touching the database (hot path)."""
        with self._lock:
            hit = self._cache.get(project_id)
        return hit[1] if hit and hit[0] > time.monotonic() else None

    def models(self, project_id: str) -> dict[str, ModelEntry]:
        """Every model the project can call, by alias (cached briefly)."""
        now = time.monotonic()
        hit = self.cached_models(project_id)
        if hit is not None:
            return hit
        with self.store.session() as session:
            rows = session.scalars(
                select(CatalogModel).where(CatalogModel.project_id == project_id).order_by(CatalogModel.alias)
            ).all()
        found = dict(self.builtins())
        found.update({row.alias: self._entry(row) for row in rows})
        with self._lock:
            self._cache[project_id] = (now + self.settings.model_cache_seconds, found)
        return found

    def get(self, project_id: str, alias: str) -> ModelEntry:
        known = self.models(project_id)
        if alias not in known:
            listing = ", ".join(sorted(known)) or "none yet; add one with `fmops models add`"
            raise NotFound(
                f"model {alias!r} does not exist; known models: {listing}",
                param="model",
                code="model_not_found",
            )
        return known[alias]

    def forget(self, project_id: str | None = None) -> None:
        with self._lock:
            if project_id is None:
                self._cache.clear()
            else:
                self._cache.pop(project_id, None)

    # --- changing -------------------------------------------------------------------------------

    def _check_spec(self, project_id: str, spec: ModelSpec, *, trusted: bool) -> ModelSpec:
        """The spec to store: URLs checked, local files anchored under $FMOPS_HOME/models (API)."""
        cls = get_provider_class(spec.provider)
        base_url = spec.base_url
        if base_url is not None:
            base_url = check_upstream_url(
                base_url, allow_private=trusted or self.settings.upstream_allow_private
            )
        model, options = spec.model, dict(spec.options)
        cls.check_options(model, options)
        operator_only = sorted((cls.operator_options | {STORED_OPTION}) & options.keys())
        if operator_only and not trusted:
            raise UserError(
                f"options {', '.join(operator_only)} of the {spec.provider} provider may be set only by "
                "the operator, with `fmops models add` on the server's host",
                param=f"options.{operator_only[0]}",
            )
        if cls.capabilities.local and not trusted:
            model = self._local_file(spec.model, "model")
            for name in sorted(cls.path_options & options.keys()):
                value = options[name]
                if not isinstance(value, str):
                    raise UserError(f"options.{name} must be a path", param=f"options.{name}")
                options[name] = self._local_file(value, f"options.{name}")
        known = self.models(project_id)
        for fallback in spec.fallbacks:
            if fallback == spec.alias:
                raise UserError("a model cannot be its own fallback", param="fallbacks")
            if fallback not in known:
                raise UserError(f"fallback {fallback!r} is not a known model", param="fallbacks")
        return spec.model_copy(update={"base_url": base_url, "model": model, "options": options})

    def _local_file(self, value: str, param: str) -> str:
        """What a local engine may load when the API names it: a file or folder under
        $FMOPS_HOME/models, or a name that is no file at all (a hub id, the default model).

        A relative path is returned anchored at that folder, so the engine loads the very file that
        was checked, not one relative to the server's working directory.
        """
        root = (self.settings.home / "models").resolve()
        refused = UserError(
            f"local model files must live under {root}; put the file there (or `fmops models pull`)",
            param=param,
        )
        # No file under the folder needs `..`, `~` (which the engines expand), a backslash, a NUL or
        # a percent-encoded dot or slash to be named.
        lowered = value.lower()
        if value.startswith("~") or any(c in lowered for c in ("\\", "\x00", "%2e", "%2f", "%5c")):
            raise refused
        path = Path(value)
        if ".." in path.parts:
            raise refused
        anchored = path if path.is_absolute() else root / path
        try:
            if path.is_absolute() or anchored.exists():
                resolved = anchored.resolve()  # symlinks followed: one leading out of the folder is refused
                if resolved != root and root not in resolved.parents:
                    raise refused
                return value if path.is_absolute() else str(resolved)
            if path.exists():  # relative to the server's working directory: outside the folder
                raise refused
        except OSError:  # a name too long for the file system, a symlink loop: no file to load
            raise refused from None
        return value

    def add(self, project_id: str, spec: ModelSpec, *, trusted: bool = False) -> ModelEntry:
        """Add a model to a project. `trusted` is the operator's CLI: private upstreams and any path."""
        if spec.alias in self.builtins():
            raise Conflict(f"{spec.alias!r} is a built-in model; choose another alias", param="alias")
        spec = self._check_spec(project_id, spec, trusted=trusted)
        api_key = spec.api_key.get_secret_value() if spec.api_key else None
        with self.store.write() as session:
            exists = session.scalar(
                select(CatalogModel.id).where(
                    CatalogModel.project_id == project_id, CatalogModel.alias == spec.alias
                )
            )
            if exists:
                raise Conflict(
                    f"model {spec.alias!r} already exists; remove it first or update it", param="alias"
                )
            # Callers send endpoints and models alike as `model`: one name cannot mean both.
            if session.scalar(
                select(Endpoint.id).where(Endpoint.project_id == project_id, Endpoint.name == spec.alias)
            ):
                raise Conflict(
                    f"{spec.alias!r} is the name of an endpoint; choose another alias", param="alias"
                )
            row = CatalogModel(
                project_id=project_id,
                alias=spec.alias,
                provider=spec.provider,
                provider_model=spec.model,
                base_url=spec.base_url,
                api_key_encrypted=self.secrets.encrypt(api_key) if api_key else None,
                context_window=spec.context_window,
                input_price=spec.input_price,
                output_price=spec.output_price,
                capabilities=spec.capabilities,
                fallbacks=list(spec.fallbacks),
                timeout_seconds=spec.timeout_seconds,
                max_retries=spec.max_retries,
                cache_ttl_seconds=spec.cache_ttl_seconds,
                options=dict(spec.options),
                license=spec.license,
            )
            session.add(row)
        self.forget(project_id)
        return self._entry(row)

    def update(
        self, project_id: str, alias: str, changes: ModelUpdate, *, trusted: bool = False
    ) -> ModelEntry:
        fields = changes.model_dump(exclude_unset=True)
        with self.store.write() as session:
            row = session.scalar(
                select(CatalogModel).where(CatalogModel.project_id == project_id, CatalogModel.alias == alias)
            )
            if row is None:
                if alias in self.builtins():
                    raise UserError(f"{alias!r} is a built-in model and cannot be changed", param="model")
                raise NotFound(f"model {alias!r} does not exist in this project", param="model")
            # Compared as stored (normalised), so re-sending the same URL is not a move.
            wanted = (fields.get("base_url") or "").strip().rstrip("/") or None
            if "base_url" in fields and wanted != row.base_url:
                # The stored key must never follow the model to a host it was not given for.
                if changes.api_key is None:
                    raise UserError("changing base_url requires api_key again", param="api_key")
                allow = trusted or self.settings.upstream_allow_private
                row.base_url = check_upstream_url(wanted, allow_private=allow) if wanted else None
            if changes.api_key is not None:
                row.api_key_encrypted = self.secrets.encrypt(changes.api_key.get_secret_value())
            for name in ("context_window", "input_price", "output_price", "timeout_seconds", "max_retries"):
                if fields.get(name) is not None:
                    setattr(row, name, fields[name])
            if "cache_ttl_seconds" in fields:
                row.cache_ttl_seconds = fields["cache_ttl_seconds"] or None
            if changes.fallbacks is not None:
                known = self.models(project_id)
                for fallback in changes.fallbacks:
                    if fallback == alias or fallback not in known:
                        raise UserError(
                            f"fallback {fallback!r} is not another known model", param="fallbacks"
                        )
                row.fallbacks = list(changes.fallbacks)
            entry = self._entry(row)
        self.forget(project_id)
        return entry

    def remove(self, project_id: str, alias: str) -> None:
        with self.store.write() as session:
            row = session.scalar(
                select(CatalogModel).where(CatalogModel.project_id == project_id, CatalogModel.alias == alias)
            )
            if row is None:
                if alias in self.builtins():
                    raise UserError(f"{alias!r} is a built-in model and cannot be removed", param="model")
                raise NotFound(f"model {alias!r} does not exist in this project", param="model")
            session.delete(row)
        self.forget(project_id)


def public_view(entry: ModelEntry) -> dict[str, Any]:
    """What may be shown about a model: everything except its credentials."""
    return {
        "alias": entry.alias,
        "provider": entry.provider,
        "model": entry.provider_model,
        "base_url": entry.base_url,
        "api_key_set": entry.api_key is not None,
        "context_window": entry.context_window,
        "input_price": entry.input_price,
        "output_price": entry.output_price,
        "capabilities": entry.capabilities,
        "fallbacks": list(entry.fallbacks),
        "timeout_seconds": entry.timeout_seconds,
        "max_retries": entry.max_retries,
        "cache_ttl_seconds": entry.cache_ttl_seconds,
        "license": entry.license,
        # Recommended settings, used where a request sets nothing (fmops.providers.generation).
        "generation": generation_of(entry.options),
        "builtin": entry.builtin,
        "created_at": entry.created_at,
    }
