"""API key format and hashing.

Keys are 240 random bits, so a single SHA-256 is as strong as a slow hash here and keeps the
per-request check to one indexed lookup. Only the hash and a short display prefix are stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets

KEY_PREFIX = "fmk-"
_KEY_RE = re.compile(r"^fmk-[A-Za-z0-9_\-]{40}$")
DISPLAY_CHARS = 12


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(30)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[:DISPLAY_CHARS]


def well_formed(key: str) -> bool:
    """Cheap shape check before any lookup: junk, SQL fragments and huge strings stop here."""
    return len(key) == len(KEY_PREFIX) + 40 and _KEY_RE.match(key) is not None
