"""One settings object for the whole platform.

Sources, highest priority first: explicit arguments, `FMOPS_*` environment variables, `fmops.toml`
(the file named by `FMOPS_CONFIG`, else `./fmops.toml`, else `$FMOPS_HOME/fmops.toml`), defaults.
Invalid values stop start-up with a `ConfigError` naming the setting.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings.exceptions import SettingsError

from fmops.errors import ConfigError

ENV_PREFIX = "FMOPS_"
# Option names that carry credentials (s3fs: key/secret/token, botocore: aws_secret_access_key...).
_CREDENTIAL = re.compile(
    r"^(key|secret|token|password)$|secret|password|access_key|session_token|credential", re.I
)


def _default_home() -> Path:
    return Path(os.environ.get("FMOPS_HOME") or "~/.fmops").expanduser()


def config_files() -> list[Path]:
    """The TOML files settings are read from, lowest priority first."""
    explicit = os.environ.get("FMOPS_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"FMOPS_CONFIG points at {path}, which is not a file")
        return [path]
    candidates = [_default_home() / "fmops.toml", Path.cwd() / "fmops.toml"]
    return [p for p in candidates if p.is_file()]


class Settings(BaseSettings):
    """Every setting has an environment variable `FMOPS_<NAME>` and a key `<name>` in fmops.toml."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    home: Path = Field(default_factory=_default_home, description="Where fmops keeps its files")
    database_url: str = Field("", description="SQLAlchemy URL; default SQLite under home")
    host: str = Field("127.0.0.1", description="Address the server binds to")
    port: int = Field(8000, ge=1, le=65535)
    redis_url: str | None = Field(None, description="Redis for shared counters and cache across replicas")
    redis_prefix: str = Field(
        "fmops:", max_length=100, description="Prefix of every Redis key, so deployments can share one Redis"
    )
    artifact_url: str = Field("", description="fsspec URL of the artifact store; default a folder under home")
    artifact_options: dict[str, Any] = Field(
        default_factory=dict,
        description='fsspec options of the artifact store (JSON), e.g. {"endpoint_url": "http://minio:9000"};'
        " credentials come from the store's own variables (AWS_ACCESS_KEY_ID...), never from here",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: readable lines when stderr is a terminal, JSON otherwise"
    )
    access_log: bool = Field(
        False, description="Log every HTTP request (gateway calls are recorded as spans either way)"
    )
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="Largest request body accepted")
    workers: int = Field(1, ge=0, le=64, description="Local job worker processes started by `fmops up`")
    gateway_workers: int = Field(
        1, ge=1, le=64, description="Server processes on one port (more than 1 needs FMOPS_REDIS_URL)"
    )
    job_poll_seconds: float = Field(0.5, gt=0, le=60)
    job_heartbeat_seconds: float = Field(2.0, gt=0, le=300)
    job_stale_seconds: float = Field(
        15.0, gt=0, description="A running job silent this long is presumed dead"
    )
    job_max_attempts: int = Field(3, ge=1, le=100)
    executor: Literal["local", "ray"] = Field(
        "local",
        description="Where curation, eval and fine-tune jobs do their work: this host, or a Ray cluster",
    )
    ray_address: str | None = Field(
        None, description="Ray cluster to join (ray://head:10001, host:6379, auto); unset: start one here"
    )
    ray_tasks: int = Field(4, ge=1, le=10_000, description="Ray tasks an eval run's cases are shared among")
    ray_train_gpu: bool = Field(False, description="Each Ray Train worker of a fine-tune takes one GPU")
    key_cache_seconds: float = Field(
        2.0, ge=0, le=60, description="How long a verified key is trusted before it is checked again"
    )
    shutdown_grace_seconds: float = Field(20.0, ge=0, le=600)
    plugins: list[str] = Field(default_factory=list, description="Extra modules imported at start-up")
    secret_key: SecretStr | None = Field(
        None, description="Fernet key encrypting provider credentials; default a file under home"
    )
    upstream_allow_private: bool = Field(
        False, description="Let API callers add upstreams on loopback/private addresses (the CLI always may)"
    )
    gateway_fast_path: bool = Field(
        True, description="Serve /v1/chat/completions and /v1/embeddings straight from ASGI (faster)"
    )
    model_cache_seconds: float = Field(2.0, ge=0, le=60, description="How long a catalog lookup is reused")
    breaker_threshold: int = Field(
        5, ge=1, le=1000, description="Consecutive upstream failures after which a model cools down"
    )
    breaker_cooldown_seconds: float = Field(
        30.0, gt=0, le=3600, description="How long a cooling model is skipped before one probe request"
    )

    # Observability (tracing, export, evaluation, alerts, retention).
    tracing: bool = Field(
        True, description="Record a span per gateway call; turn off only to measure what tracing costs"
    )
    trace_durability: Literal["buffered", "strict"] = Field(
        "buffered",
        description="strict: a call answers 2xx only once its trace is committed; buffered: written within"
        " ~50 ms, off the request path",
    )
    trace_memory_spans: int = Field(
        20_000, ge=100, le=10_000_000, description="Spans held in memory before the writer spools to disk"
    )
    trace_spool_bytes: int = Field(
        2 * 1024**3, ge=0, description="Most bytes spooled to disk while the database is unreachable"
    )
    trace_retention_days: int = Field(
        30, ge=0, le=36500, description="Default days traces are kept (0 keeps them forever); per project too"
    )
    retention_interval_seconds: float = Field(3600.0, gt=0, description="How often the retention job runs")
    otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP collector to export every span to, e.g. http://collector:4318/v1/traces"
    )
    otlp_headers: dict[str, str] = Field(default_factory=dict, description="Headers sent with OTLP export")
    alert_interval_seconds: float = Field(
        30.0, gt=0, le=3600, description="How often alert rules are checked"
    )
    stats_rollup_interval_seconds: float = Field(
        60.0, gt=0, le=3600, description="How often hours that got spans are rolled up for long dashboards"
    )
    evaluator_queue: int = Field(
        10_000, ge=10, le=1_000_000, description="Spans waiting for online evaluators before sampling sheds"
    )
    eval_cache_days: float = Field(
        30.0, ge=0, le=36500, description="Days an eval answer stays cached for re-runs (0: forever)"
    )
    eval_cache_max_entries: int = Field(
        200_000, ge=0, description="Most eval answers cached, the oldest pruned first (0: no limit)"
    )
    eval_cache_prune_interval_seconds: float = Field(
        3600.0, gt=0, description="How often the server prunes the eval cache"
    )
    web_session_hours: float = Field(
        12.0, gt=0, le=24 * 90, description="How long a web sign-in lasts without a visit (sliding)"
    )
    web_cookie_secure: bool = Field(
        False, description="Send the web session cookie over HTTPS only (set it behind a TLS proxy)"
    )

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("database_url", mode="after")
    @classmethod
    def _check_db_url(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must start with sqlite:// or postgresql:// (e.g. postgresql+psycopg://u@h/db)")
        return value

    @field_validator("artifact_options", mode="after")
    @classmethod
    def _no_credentials_in_artifact_options(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Settings are shown and passed around whole; credentials stay in the store's own variables.
        def names(options: Any) -> list[str]:
            if not isinstance(options, dict):
                return []
            return [str(k) for k in options] + [n for v in options.values() for n in names(v)]

        found = [n for n in names(value) if _CREDENTIAL.search(n)]
        if found:
            raise ValueError(
                f"{', '.join(found)}: give credentials through the store's own variables (AWS_ACCESS_KEY_ID,"
                " AWS_SECRET_ACCESS_KEY...) or the machine's role, not in artifact_options"
            )
        return value

    @field_validator("redis_url", mode="after")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value or None

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.home / 'fmops.db'}"
        elif self.database_url.startswith("postgresql://"):
            # psycopg 3 is the driver we ship; plain postgresql:// would ask for psycopg2.
            self.database_url = "postgresql+psycopg://" + self.database_url.removeprefix("postgresql://")
        if not self.artifact_url:
            self.artifact_url = (self.home / "artifacts").as_uri()
        return self

    @property
    def admin_key_path(self) -> Path:
        return self.home / "admin.key"

    @property
    def secret_key_path(self) -> Path:
        return self.home / "secret.key"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_files())
        return (init_settings, env_settings, toml)


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        name = ".".join(str(p) for p in item["loc"]) or "settings"
        env = ENV_PREFIX + name.split(".")[0].upper()
        problems.append(f"{env} ({name} in fmops.toml): {item['msg']}")
    return "invalid settings: " + "; ".join(problems)


def load_settings(overrides: Mapping[str, Any] | None = None) -> Settings:
    """Build settings from the environment and fmops.toml; raise ConfigError naming any bad setting."""
    try:
        return Settings(**dict(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except SettingsError as exc:  # a list or dict setting whose variable is not valid JSON
        found = re.search(r'field "(\w+)"', str(exc))
        name = found.group(1) if found else "settings"
        raise ConfigError(
            f"invalid settings: {ENV_PREFIX}{name.upper()} ({name} in fmops.toml): "
            f'must be JSON, e.g. ["a", "b"] ({exc.__cause__ or exc})'
        ) from None
    except ValueError as exc:  # a TOML file that does not parse
        files = ", ".join(str(p) for p in config_files()) or "fmops.toml"
        raise ConfigError(f"invalid settings in {files}: {exc}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
