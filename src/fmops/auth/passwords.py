"""Password hashing for the web sign-in: scrypt from the standard library, parameters stored with the hash.

scrypt is memory-hard (16 MiB per check with these parameters), so a stolen table is slow to attack
on GPUs; the parameters travel in the stored string, so raising them later keeps old hashes valid.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

from fmops.errors import UserError

_N, _R, _P = 2**14, 8, 1
_SCHEME = "scrypt"
MIN_LENGTH = 8
MAX_LENGTH = 1024  # scrypt reads it all; a megabyte "password" is a denial of service


def check_password(password: str) -> str:
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise UserError(f"a password must be {MIN_LENGTH} to {MAX_LENGTH} characters long", param="password")
    return password


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=2**26, dklen=32)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    check_password(password)
    salt = secrets.token_bytes(16)
    digest = _derive(password, salt, _N, _R, _P)
    return f"{_SCHEME}${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str | None) -> bool:
    """Whether `password` matches; a user with no password (or a malformed hash) never matches."""
    if not stored or len(password) > MAX_LENGTH:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != _SCHEME:
            return False
        actual = _derive(password, _unb64(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, _unb64(digest))


@functools.cache
def dummy_hash() -> str:
    """Checked when a name is unknown, so that a wrong name and a wrong password take the same time."""
    return hash_password(secrets.token_urlsafe(16))
