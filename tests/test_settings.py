"""Settings: defaults, FMOPS_* variables, fmops.toml files, their priority, errors naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from fmops.errors import ConfigError
from fmops.settings import Settings, config_files, load_settings


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """FMOPS_HOME in a fresh folder, and a working directory without any fmops.toml."""
    folder = tmp_path / "home"
    folder.mkdir()
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.setenv("FMOPS_HOME", str(folder))
    monkeypatch.chdir(workdir)
    return folder


def write_toml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- defaults ---------------------------------------------------------------------------------


def test_defaults_live_under_fmops_home(home: Path) -> None:
    s = load_settings()
    assert s.home == home.resolve()
    assert s.database_url == f"sqlite:///{home.resolve() / 'fmops.db'}"
    assert s.is_sqlite
    assert s.host == "127.0.0.1"
    assert s.port == 8000
    assert s.artifact_url == (home.resolve() / "artifacts").as_uri()
    assert s.admin_key_path == home.resolve() / "admin.key"
    assert s.redis_url is None
    assert s.plugins == []
    assert s.log_format == "auto"  # readable on a terminal, JSON otherwise


def test_home_defaults_to_dot_fmops_in_the_user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FMOPS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.home == (tmp_path / ".fmops").resolve()
    assert s.database_url == f"sqlite:///{(tmp_path / '.fmops').resolve() / 'fmops.db'}"


def test_fmops_home_expands_tilde(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("FMOPS_HOME", "~/elsewhere")
    monkeypatch.chdir(tmp_path)
    assert load_settings().home == (tmp_path / "elsewhere").resolve()


# --- environment --------------------------------------------------------------------------------


def test_environment_variables_override_defaults(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FMOPS_HOST", "0.0.0.0")
    monkeypatch.setenv("FMOPS_PORT", "9123")
    monkeypatch.setenv("FMOPS_DATABASE_URL", "postgresql+psycopg://u@db.example/fm")
    monkeypatch.setenv("FMOPS_REDIS_URL", "redis://cache:6379/0")
    monkeypatch.setenv("FMOPS_WORKERS", "4")
    monkeypatch.setenv("FMOPS_LOG_LEVEL", "debug")
    monkeypatch.setenv("FMOPS_PLUGINS", '["acme.kinds", "acme.providers"]')
    monkeypatch.setenv("FMOPS_KEY_CACHE_SECONDS", "0")
    s = load_settings()
    assert (s.host, s.port, s.workers, s.log_level) == ("0.0.0.0", 9123, 4, "debug")
    assert s.database_url == "postgresql+psycopg://u@db.example/fm"
    assert not s.is_sqlite
    assert s.redis_url == "redis://cache:6379/0"
    assert s.plugins == ["acme.kinds", "acme.providers"]
    assert s.key_cache_seconds == 0
    # The artifact store still defaults under home when only the database moves.
    assert s.artifact_url == (home.resolve() / "artifacts").as_uri()


def test_explicit_arguments_beat_the_environment(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FMOPS_PORT", "9123")
    assert load_settings({"port": 7000}).port == 7000


def test_unrelated_fmops_variables_do_not_stop_start_up(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Test harnesses and other tools share the prefix (FMOPS_TEST_POSTGRES_URL, FMOPS_KEY, ...).
    monkeypatch.setenv("FMOPS_TEST_REQUIRE_SERVICES", "1")
    monkeypatch.setenv("FMOPS_KEY", "fmk-whatever")
    assert load_settings().port == 8000


def test_empty_redis_url_means_none(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FMOPS_REDIS_URL", "")
    assert load_settings().redis_url is None


# --- fmops.toml ---------------------------------------------------------------------------------


def test_toml_in_the_working_directory_is_read(home: Path) -> None:
    write_toml(Path.cwd() / "fmops.toml", 'port = 8111\nhost = "10.0.0.5"\nplugins = ["a.b"]\n')
    s = load_settings()
    assert (s.port, s.host, s.plugins) == (8111, "10.0.0.5", ["a.b"])


def test_toml_in_fmops_home_is_read(home: Path) -> None:
    write_toml(home / "fmops.toml", "port = 8222\nworkers = 3\n")
    s = load_settings()
    assert (s.port, s.workers) == (8222, 3)


def test_working_directory_toml_beats_the_home_one_key_by_key(home: Path) -> None:
    write_toml(home / "fmops.toml", 'port = 8222\nhost = "10.0.0.9"\n')
    write_toml(Path.cwd() / "fmops.toml", "port = 8111\n")
    assert config_files() == [home / "fmops.toml", Path.cwd() / "fmops.toml"]
    s = load_settings()
    assert s.port == 8111
    assert s.host == "10.0.0.9"  # only set in the home file, still applies


def test_fmops_config_names_the_only_file_read(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_toml(home / "fmops.toml", 'host = "10.0.0.9"\n')
    write_toml(Path.cwd() / "fmops.toml", "port = 8111\n")
    explicit = write_toml(tmp_path / "conf" / "prod.toml", "port = 8333\n")
    monkeypatch.setenv("FMOPS_CONFIG", str(explicit))
    assert config_files() == [explicit]
    s = load_settings()
    assert s.port == 8333
    assert s.host == "127.0.0.1"  # the home and working-directory files are not read


def test_fmops_config_pointing_at_nothing_is_an_error(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FMOPS_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="FMOPS_CONFIG") as info:
        load_settings()
    assert "missing.toml" in info.value.message


def test_environment_beats_toml(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_toml(Path.cwd() / "fmops.toml", 'port = 8111\nhost = "10.0.0.5"\n')
    monkeypatch.setenv("FMOPS_PORT", "9000")
    s = load_settings()
    assert s.port == 9000
    assert s.host == "10.0.0.5"


def test_explicit_arguments_beat_toml(home: Path) -> None:
    write_toml(Path.cwd() / "fmops.toml", "port = 8111\n")
    assert load_settings({"port": 7000}).port == 7000


def test_unknown_toml_key_is_refused(home: Path) -> None:
    write_toml(Path.cwd() / "fmops.toml", "port = 8111\nprot = 9000\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "prot" in info.value.message
    assert "not permitted" in info.value.message


def test_toml_that_does_not_parse_names_the_file(home: Path) -> None:
    path = write_toml(Path.cwd() / "fmops.toml", "port = \n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(path) in info.value.message


def test_invalid_toml_value_names_the_setting(home: Path) -> None:
    write_toml(home / "fmops.toml", 'port = "eighty"\n')
    with pytest.raises(ConfigError, match="FMOPS_PORT"):
        load_settings()


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("FMOPS_PORT", "99999"),
        ("FMOPS_PORT", "0"),
        ("FMOPS_PORT", "eighty"),
        ("FMOPS_LOG_LEVEL", "loud"),
        ("FMOPS_LOG_FORMAT", "xml"),
        ("FMOPS_DATABASE_URL", "mysql://root@localhost/fm"),
        ("FMOPS_REDIS_URL", "http://cache:6379"),
        ("FMOPS_WORKERS", "-1"),
        ("FMOPS_WORKERS", "65"),
        ("FMOPS_MAX_BODY_BYTES", "10"),
        ("FMOPS_KEY_CACHE_SECONDS", "61"),
        ("FMOPS_JOB_POLL_SECONDS", "0"),
        ("FMOPS_PLUGINS", "not json"),
    ],
)
def test_invalid_value_raises_config_error_naming_the_variable(
    home: Path, monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert var in info.value.message, info.value.message
    assert info.value.message.startswith("invalid settings")
    assert "Traceback" not in info.value.message


def test_every_problem_is_reported_at_once(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FMOPS_PORT", "99999")
    monkeypatch.setenv("FMOPS_LOG_LEVEL", "loud")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "FMOPS_PORT" in info.value.message
    assert "FMOPS_LOG_LEVEL" in info.value.message


def test_plain_postgresql_url_is_normalised_to_psycopg(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FMOPS_DATABASE_URL", "postgresql://fm:secret@db.example:5433/fmops")
    assert load_settings().database_url == "postgresql+psycopg://fm:secret@db.example:5433/fmops"


@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg://fm@db/fmops", "sqlite:////var/lib/fmops/fm.db", "sqlite:///:memory:"],
)
def test_explicit_driver_urls_are_kept(home: Path, url: str) -> None:
    assert load_settings({"database_url": url}).database_url == url


def test_settings_class_reads_the_same_sources(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_toml(home / "fmops.toml", "workers = 2\n")
    monkeypatch.setenv("FMOPS_PORT", "9001")
    s = Settings()
    assert (s.port, s.workers) == (9001, 2)
