"""Structured logs: one JSON object per line, extra fields kept, secrets masked before any handler writes."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fmops.auth.keys import KEY_PREFIX
from fmops.logs import ConsoleFormatter, JsonFormatter, configure_logging, redact

FMOPS_KEY = KEY_PREFIX + "Ab3dEf7_Gh9-" * 3 + "Jk2L"  # fixed: it is part of test ids
OPENAI_KEY = "sk-proj-" + "Ab3_dEf-" * 6
ANTHROPIC_KEY = "sk-ant-api03-" + "Zx9" * 20
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"


def capture(formatter: logging.Formatter, name: str = "fmops.test") -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


@pytest.fixture
def json_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    logger, stream = capture(JsonFormatter())
    yield logger, stream
    logger.handlers[:] = []
    logger.propagate = True


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


# --- JSON lines -------------------------------------------------------------------------------


def test_each_record_is_one_json_object_on_one_line(json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = json_log
    logger.info("first")
    logger.warning("second\nspans\nlines")
    logger.debug("third %s of %d", "arg", 3)
    entries = lines(stream)
    assert len(entries) == 3
    assert [e["msg"] for e in entries] == ["first", "second\nspans\nlines", "third arg of 3"]
    assert [e["level"] for e in entries] == ["info", "warning", "debug"]
    assert {e["logger"] for e in entries} == {"fmops.test"}
    for entry in entries:
        ts = datetime.fromisoformat(str(entry["ts"]))
        assert ts.tzinfo is not None
        assert abs((datetime.now(UTC) - ts).total_seconds()) < 60


def test_extra_fields_become_top_level_keys(json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = json_log
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    logger.info(
        "job finished",
        extra={
            "job_id": "j1",
            "attempt": 2,
            "ratio": 0.5,
            "ok": True,
            "tags": ["a", "b"],
            "meta": {"k": "v"},
            "when": when,
            "path": Path("/tmp/x"),
            "nothing": None,
        },
    )
    (entry,) = lines(stream)
    assert entry["job_id"] == "j1"
    assert entry["attempt"] == 2
    assert entry["ratio"] == 0.5
    assert entry["ok"] is True
    assert entry["tags"] == ["a", "b"]
    assert entry["meta"] == {"k": "v"}
    assert datetime.fromisoformat(str(entry["when"])) == when
    assert entry["path"] == "/tmp/x"  # not JSON-native: written as its string
    assert entry["nothing"] is None
    # LogRecord's own attributes are not repeated as fields.
    for noise in ("args", "levelno", "pathname", "lineno", "msecs", "thread", "processName"):
        assert noise not in entry


def test_exceptions_are_included_in_the_same_line(json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = json_log
    try:
        raise RuntimeError(f"upstream refused key {OPENAI_KEY}")
    except RuntimeError:
        logger.exception("call failed")
    (entry,) = lines(stream)
    assert entry["level"] == "error"
    exc = str(entry["exc"])
    assert "Traceback" in exc
    assert "RuntimeError: upstream refused key" in exc
    assert OPENAI_KEY not in stream.getvalue()


def test_secrets_in_messages_and_fields_are_masked_and_json_stays_valid(
    json_log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_log
    logger.info(
        "calling with %s",
        FMOPS_KEY,
        extra={
            "authorization": f"Bearer {JWT}",
            "api_key": "abcdefgh12345678",
            "headers": {"x-api-key": ANTHROPIC_KEY, "password": "hunter2hunter2"},
            "url": "https://api.example/v1?api_key=QWERTYUIOP123&page=2",
        },
    )
    raw = stream.getvalue()
    for secret in (FMOPS_KEY, JWT, "abcdefgh12345678", ANTHROPIC_KEY, "hunter2hunter2", "QWERTYUIOP123"):
        assert secret not in raw
    (entry,) = lines(stream)  # still parses after masking
    assert entry["msg"] == "calling with ***"
    assert entry["authorization"] == "Bearer ***"
    assert entry["url"] == "https://api.example/v1?api_key=***&page=2"


def test_console_formatter_masks_too() -> None:
    logger, stream = capture(ConsoleFormatter("%(levelname)s %(message)s"), "fmops.test.console")
    try:
        logger.error("bad key %s", FMOPS_KEY)
    finally:
        logger.handlers[:] = []
        logger.propagate = True
    assert stream.getvalue() == "ERROR bad key ***\n"


# --- redact -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"key={FMOPS_KEY}", "key=***"),
        (f"using {FMOPS_KEY}, then stop", "using ***, then stop"),
        (f"openai {OPENAI_KEY}", "openai ***"),
        (f"anthropic {ANTHROPIC_KEY}.", "anthropic ***."),
        (f"Authorization: Bearer {JWT}", "Authorization: Bearer ***"),
        (f"authorization: bearer {FMOPS_KEY}", "authorization: bearer ***"),
        ("api_key=abcd1234efgh", "api_key=***"),
        ("API-KEY: abcd1234efgh", "API-KEY: ***"),
        ('{"apikey": "abcd1234efgh"}', '{"apikey": "***"}'),
        ("x-api-key='abcd1234efgh'", "x-api-key='***'"),
        ("password=correct-horse-battery", "password=***"),
        ("client_secret: 0123456789abcdef", "client_secret: ***"),
        ("refresh token=abcdefghijkl", "refresh token=***"),
        (f"two keys {FMOPS_KEY} and {OPENAI_KEY}", "two keys *** and ***"),
    ],
)
def test_redact_masks_keys_and_credentials(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer <key>",
        "send the header `Authorization: Bearer <key>` (create a key with `fmops keys create`)",
        "invalid API key: fmops keys look like `fmk-` followed by 40 characters",
        "the task-1234567890 finished in 3 s",  # 'sk-' inside a word is not a key
        "desk-lamp-model-2000 and risk-adjusted-score",
        "token count: 512",
        "password too short",
        "created key 0192f0c3a1b27e4f8c9d0e1f2a3b4c5d (engineer) for alice in default",
        "",
        "naïve café — ünïcode stays",
    ],
)
def test_redact_leaves_ordinary_text_readable(text: str) -> None:
    assert redact(text) == text


def test_redact_is_idempotent() -> None:
    once = redact(f"Bearer {JWT} api_key={FMOPS_KEY} {OPENAI_KEY}")
    assert redact(once) == once
    assert "***" in once


# --- configure_logging ------------------------------------------------------------------------


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in ("sqlalchemy", "httpx", "httpcore", "alembic")}
    uvicorn = {
        name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
    }
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, lvl in quiet.items():
        logging.getLogger(name).setLevel(lvl)
    for name, (hs, propagate) in uvicorn.items():
        logging.getLogger(name).handlers[:] = hs
        logging.getLogger(name).propagate = propagate


@pytest.mark.usefixtures("restore_root_logging")
def test_configure_logging_routes_everything_through_one_redacting_json_handler(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", "json")
    logging.getLogger("uvicorn.access").info('127.0.0.1 - "GET /?api_key=abcdefghijkl HTTP/1.1" 200')
    logging.getLogger("fmops.x").debug("hidden at info level")
    logging.getLogger("sqlalchemy.engine").info("SELECT 1")  # quietened to warnings
    logging.getLogger("fmops.x").warning("key %s leaked?", FMOPS_KEY)
    err = capsys.readouterr().err
    entries = [json.loads(line) for line in err.splitlines()]
    assert [e["logger"] for e in entries] == ["uvicorn.access", "fmops.x"]
    assert "api_key=***" in str(entries[0]["msg"])
    assert entries[1]["msg"] == "key *** leaked?"
    assert FMOPS_KEY not in err


@pytest.mark.usefixtures("restore_root_logging")
def test_configure_logging_console_format(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("debug", "console")
    logging.getLogger("fmops.y").debug("token=%s", "abcdefghijklmnop")
    err = capsys.readouterr().err.strip()
    assert err.endswith("DEBUG fmops.y: token=***")
    with pytest.raises(json.JSONDecodeError):
        json.loads(err)


def test_passwords_with_any_characters_and_url_credentials_are_masked() -> None:
    from fmops.logs import redact

    text = redact("password=p@ss!w0rd dsn=postgresql+psycopg://fm:s3cr3t@db:5432/fm http://example.com:80/x")
    assert "p@ss!w0rd" not in text
    assert "s3cr3t" not in text
    assert "postgresql+psycopg://fm:***@db:5432/fm" in text
    assert "http://example.com:80/x" in text
