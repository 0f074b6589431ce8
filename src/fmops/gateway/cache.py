"""Exact-match response cache: the same request to the same model in the same project gets the
stored response until its TTL runs out.

Requests match on canonical JSON (keys sorted; 1.0 and 1 the same) of everything that shapes the
answer. Fields that only shape delivery or bookkeeping are ignored: `stream`, `stream_options`,
`user`, `metadata`, `store` and the like, and fmops' own extensions (`cache`, `timeout`,
`fallbacks`). The gateway decides when caching applies; this module only stores and finds.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import orjson

from fmops.counters import Counters
from fmops.errors import Unavailable

log = logging.getLogger(__name__)

KEY_PREFIX = "cache:"
# Bump when the key recipe changes, so old entries are never served for new requests.
_VERSION = 1
IGNORED_FIELDS = frozenset(
    {
        "model",  # the resolved alias is part of the key instead
        "stream",
        "stream_options",
        "user",
        "metadata",
        "store",
        "safety_identifier",
        "prompt_cache_key",
        "cache",
        "timeout",
        "fallbacks",
    }
)


def _canonical(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


class ResponseCache:
    def __init__(self, counters: Counters) -> None:
        self.counters = counters

    @staticmethod
    def key_for(project_id: str, model_alias: str, body: dict[str, Any]) -> str:
        """The cache key of a chat request body (as sent upstream) to `model_alias` in a project."""
        fields = {k: _canonical(v) for k, v in body.items() if k not in IGNORED_FIELDS and v is not None}
        raw = orjson.dumps([_VERSION, project_id, model_alias, fields], option=orjson.OPT_SORT_KEYS)
        return KEY_PREFIX + hashlib.sha256(raw).hexdigest()

    async def get(self, key: str) -> dict[str, Any] | None:
        """The stored response, or None: absent, expired, unreadable, or the store is down (a miss)."""
        try:
            raw = await self.counters.get_bytes(key)
        except Unavailable as exc:
            log.warning("response cache unavailable; treated as a miss", extra={"error": exc.message})
            return None
        if raw is None:
            return None
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None

    async def put(self, key: str, response: dict[str, Any], ttl_seconds: float) -> None:
        """Store a response for `ttl_seconds`; a store that is down only loses the entry."""
        if ttl_seconds <= 0:
            return
        try:
            await self.counters.set_bytes(key, orjson.dumps(response), ttl_seconds)
        except Unavailable as exc:
            log.warning("response cache unavailable; response not stored", extra={"error": exc.message})
