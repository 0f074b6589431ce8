"""Structured logging: one JSON object per line, with secrets redacted before any handler sees them."""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

# fmops keys, OpenAI/Anthropic-style provider keys, bearer tokens, key=value credentials.
_SECRET_PATTERNS = [
    re.compile(r"fmk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=\-]{16,}"),
    re.compile(
        r"(?i)((?:api[_-]?key|x-api-key|password|secret|token)[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9._~+/=\-]{8,}"
    ),
    # Credentials inside URLs: scheme://user:secret@host.
    re.compile(r"(://[^/\s:@]+:)[^@\s/]+(?=@)"),
    # Passwords may hold any printable character (and be short).
    # (`password: ...` unquoted is prose, such as an error naming the field, and stays readable.)
    re.compile(r"(?i)((?:password|passwd|pwd)(?:\s*=\s*[\"']?|[\"']?\s*:\s*[\"']))[^\s\"'&,]{3,}"),
]


# Exact secrets this process holds (provider keys as decrypted from the catalog): masked wherever
# they appear, whatever they look like. Patterns miss keys of unknown shapes, and some upstreams
# repeat the key they were sent in their error messages.
_KNOWN_SECRETS: set[str] = set()
_MIN_KNOWN_SECRET = 8  # shorter values would mask ordinary words


def remember_secret(value: str) -> None:
    """Mask `value` in everything redacted from now on (error messages, logs, spans)."""
    if len(value) >= _MIN_KNOWN_SECRET:
        _KNOWN_SECRETS.add(value)


def redact(text: str) -> str:
    """Mask anything that looks like a key or credential, and every secret remembered."""
    for secret in tuple(_KNOWN_SECRETS):
        if secret in text:
            text = text.replace(secret, "***")
    for pattern in _SECRET_PATTERNS:
        replacement = r"\1***" if pattern.groups else "***"
        text = pattern.sub(replacement, text)
    return text


_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI-coloured copy of msg
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        line = orjson.dumps(entry, default=str).decode()
        return redact(line)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """Route fmops, uvicorn and library logs through one redacting handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(ConsoleFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # SQL echo and HTTP client chatter would drown the useful lines.
    for name in ("sqlalchemy", "httpx", "httpcore", "alembic"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
