"""Logging: one JSON object per line (or, on a terminal, a readable line), secrets redacted first.

`FMOPS_LOG_FORMAT=auto` (the default) writes readable lines when stderr is a terminal (`make up`
in a shell) and JSON otherwise (a service manager, a container, a file); `json` and `console`
choose one whatever stderr is.
"""

from __future__ import annotations

import json
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
        try:
            line = orjson.dumps(entry, default=str).decode()
        except TypeError:  # a lone surrogate from a request: the standard library escapes it
            line = json.dumps(entry, default=str)
        return redact(line)


class ConsoleFormatter(logging.Formatter):
    """`12:00:01 INFO  fmops.server.runner: message key=value …`: for a person at a terminal."""

    def __init__(self, fmt: str = "%(asctime)s %(levelname)-5s %(name)s: %(message)s") -> None:
        super().__init__(fmt, datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [
            f"{key}={value}"
            for key, value in record.__dict__.items()
            if key not in _STANDARD_ATTRS and not key.startswith("_")
        ]
        return redact(f"{line} {' '.join(extras)}" if extras else line)


def resolve_format(fmt: str, stream: Any = None) -> str:
    """`auto`: readable lines on a terminal, JSON anywhere else."""
    if fmt != "auto":
        return fmt
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return "console" if isatty is not None and isatty() else "json"


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """Route fmops, uvicorn and library logs through one redacting handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    if resolve_format(fmt, sys.stderr) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(ConsoleFormatter())
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
