"""Encryption of stored provider credentials (Fernet: AES-128-CBC + HMAC-SHA256, from `cryptography`).

The key comes from FMOPS_SECRET_KEY, else from `$FMOPS_HOME/secret.key` (created on first use,
mode 0600). Replicas sharing a database must share the key.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken

from fmops.auth.service import write_secret
from fmops.errors import ConfigError
from fmops.settings import Settings


class SecretBox:
    def __init__(self, key: bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except ValueError:
            raise ConfigError(
                "FMOPS_SECRET_KEY must be a Fernet key (32 url-safe base64 bytes); make one with "
                '`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`'
            ) from None

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        if settings.secret_key is not None:
            return cls(settings.secret_key.get_secret_value().encode())
        path = settings.secret_key_path
        if not path.exists():
            write_secret(path, Fernet.generate_key().decode())
        return cls(path.read_text().strip().encode())

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ConfigError(
                "a stored provider key cannot be decrypted: FMOPS_SECRET_KEY (or secret.key) changed; "
                "set the model's api key again"
            ) from None
