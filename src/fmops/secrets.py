"""Encryption of stored provider credentials (Fernet: AES-128-CBC + HMAC-SHA256, from `cryptography`).

The key comes from FMOPS_SECRET_KEY, else from `$FMOPS_HOME/secret.key` (created on first use,
mode 0600). Replicas sharing a database must share the key.

`cryptography` (8 MB of OpenSSL) loads on the first encryption or decryption: most processes that
build a catalog (every CLI command, an eval run against keyless models) never need it. The key is
still checked when the box is made, as Fernet checks it, so a bad key fails at start-up.
"""

from __future__ import annotations

import base64
import os
import re
from functools import cached_property
from typing import TYPE_CHECKING

from fmops.auth.service import write_secret
from fmops.errors import ConfigError
from fmops.settings import Settings

if TYPE_CHECKING:
    from cryptography.fernet import Fernet


# A Fernet key as Fernet itself accepts one: 32 bytes in url-safe base64 (the padding optional),
# whitespace anywhere ignored (checked against cryptography 51 on 40,000 mangled keys).
_FERNET_KEY = re.compile(rb"[A-Za-z0-9_-]{43}=?")
_BAD_KEY = (
    "FMOPS_SECRET_KEY must be a Fernet key (32 url-safe base64 bytes); make one with "
    '`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`'
)


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if _FERNET_KEY.fullmatch(key.translate(None, b" \t\n\r\f")) is None:
            raise ConfigError(_BAD_KEY)
        self._key = key

    @cached_property
    def _fernet(self) -> Fernet:
        from cryptography.fernet import Fernet

        try:
            return Fernet(self._key)
        except ValueError:  # the check above let through a key Fernet refuses
            raise ConfigError(_BAD_KEY) from None

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        if settings.secret_key is not None:
            return cls(settings.secret_key.get_secret_value().encode())
        path = settings.secret_key_path
        if not path.exists():
            write_secret(path, base64.urlsafe_b64encode(os.urandom(32)).decode())  # Fernet.generate_key()
        return cls(path.read_text().strip().encode())

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ConfigError(
                "a stored provider key cannot be decrypted: FMOPS_SECRET_KEY (or secret.key) changed; "
                "set the model's api key again"
            ) from None
