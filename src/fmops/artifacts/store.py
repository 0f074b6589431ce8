"""One fsspec filesystem and a root under it; atomic writes by a temporary key and a move.

A write goes to `<key>.<random>.partial` and is moved to `<key>` when the writer closes without an
error, so a reader never sees half a file: on a local disk the move is a rename (atomic); on object
stores an object appears only once its upload completes (and the move is a server-side copy). A
crash leaves at most a `.partial` file, which `sweep_partials` removes.

Object stores take their options from `FMOPS_ARTIFACT_OPTIONS` (e.g. an S3-compatible server's
`endpoint_url`) and their credentials from their own variables (AWS_ACCESS_KEY_ID...), so no secret
passes through fmops' settings, logs or spans.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

if TYPE_CHECKING:
    import pyarrow.fs as pafs

    from fmops.settings import Settings

PARTIAL = ".partial"
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")


def check_key(key: str) -> str:
    """A relative key of plain path segments: no `..`, no leading `/`, no odd characters."""
    if not _KEY.fullmatch(key) or any(part in {".", ".."} for part in key.split("/")):
        raise ValueError(f"invalid artifact key {key!r}")
    return key


class ArtifactStore:
    def __init__(self, url: str, options: dict[str, Any] | None = None) -> None:
        self.url = url
        fs, root = fsspec.core.url_to_fs(url, **(options or {}))
        self.fs: fsspec.AbstractFileSystem = fs
        self.root = str(root).rstrip("/")
        if self.is_local:
            Path(self.root).mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_settings(cls, settings: Settings) -> ArtifactStore:
        return cls(settings.artifact_url or (settings.home / "artifacts").as_uri(), settings.artifact_options)

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def full_path(self, key: str) -> str:
        """The path of `key` inside the filesystem (what fsspec and pyarrow open)."""
        return f"{self.root}/{check_key(key)}"

    def arrow_filesystem(self) -> pafs.FileSystem:
        """The same store as a pyarrow filesystem (native for local files: no Python in the read path)."""
        import pyarrow.fs as pafs

        if self.is_local:
            return pafs.LocalFileSystem()
        return pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))

    @contextmanager
    def open_write(self, key: str) -> Iterator[IO[bytes]]:
        """A binary file that becomes `key` when the block ends normally; on an error, nothing."""
        final = self.full_path(key)
        partial = f"{final}.{secrets.token_hex(4)}{PARTIAL}"
        self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
        try:
            with self.fs.open(partial, "wb") as handle:
                yield handle
            self.fs.mv(partial, final)
        except BaseException:
            self._remove(partial)
            raise

    @contextmanager
    def open_read(self, key: str) -> Iterator[IO[bytes]]:
        with self.fs.open(self.full_path(key), "rb") as handle:
            yield handle

    def put(self, source: Path, key: str) -> str:
        """Upload a local file to `key` (atomically, as `open_write`); its SHA-256."""
        digest = hashlib.sha256()
        with source.open("rb") as src, self.open_write(key) as sink:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                sink.write(chunk)
        return digest.hexdigest()

    def get(self, key: str, target: Path) -> str:
        """Download `key` to a local file; its SHA-256."""
        digest = hashlib.sha256()
        with self.open_read(key) as src, target.open("wb") as sink:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                sink.write(chunk)
        return digest.hexdigest()

    def exists(self, key: str) -> bool:
        self._forget_listings()
        return bool(self.fs.exists(self.full_path(key)))

    def size(self, key: str) -> int:
        return int(self.fs.size(self.full_path(key)))

    def delete(self, key: str) -> None:
        self._remove(self.full_path(key))

    def keys(self, prefix: str) -> list[str]:
        """Keys under a folder key (recursively), relative to the root."""
        base = self.full_path(prefix)
        self._forget_listings()
        if not self.fs.exists(base):
            return []
        found: list[str] = self.fs.find(base)
        return [p[len(self.root) + 1 :] for p in (str(f) for f in found)]

    def modified(self, key: str) -> float:
        """Seconds since the epoch the object was last written."""
        info: dict[str, Any] = self.fs.info(self.full_path(key))
        for field in ("mtime", "LastModified", "updated", "created"):
            value = info.get(field)
            if isinstance(value, int | float):
                return float(value)
            if value is not None and hasattr(value, "timestamp"):
                return float(value.timestamp())
        return time.time()

    def sweep_partials(self, prefix: str, older_than_seconds: float = 3600.0) -> list[str]:
        """Remove `.partial` files a crashed writer left under `prefix`; the keys removed."""
        cutoff = time.time() - older_than_seconds
        removed = []
        for key in self.keys(prefix):
            if key.endswith(PARTIAL) and self.modified(key) < cutoff:
                self.delete(key)
                removed.append(key)
        return removed

    def _forget_listings(self) -> None:
        # Object stores cache folder listings per process; another process (a worker) may have
        # written since, and a stale listing would hide its files.
        if not self.is_local:
            self.fs.invalidate_cache()

    def _remove(self, path: str) -> None:
        with suppress(FileNotFoundError):
            self.fs.rm(path)
