"""The trace writer's disk spool: where spans wait while the database is unreachable.

Spans are appended as JSON lines to chunk files under `$FMOPS_HOME/spool`, written with one
`write` call each so that a killed process loses at most the line it was writing (skipped on
read). A chunk is `<pid>-<n>.open` while written, `.ready` once full, `.taken` while its spans are
in the writer's queue, and deleted only when every one of them is committed. A process that finds
chunks of a process that is gone adopts them at start; replaying a chunk whose spans were already
committed is harmless, because inserts ignore span ids already stored.

Buffered spans are written without fsync (a killed process's writes survive in the page cache; a
power cut may lose the last of them). Strict durability's spans are appended with `sync=True`: the
file is fsync'd, and so is the directory the first time a chunk file is created, so the span is on
disk before the caller answers. Renames (`.open` -> `.ready` -> `.taken`) are not synced: after a
power cut a chunk may be found under its earlier name, and every name is adopted.
"""

from __future__ import annotations

import contextlib
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)
CHUNK_SPANS = 5_000
SPOOL_MARK = "_fmops_spool"  # on a span taken from a chunk: the chunk's path
INGESTED = "_fmops_ingested"  # an application's span (OTLP ingest), never spend: kept in the spool
# The room strict admission asks for: a few large spans.
HEADROOM_BYTES = 4 * 1024**2
_TIMES = ("start_time", "end_time")


class Spool:
    def __init__(self, directory: Path, max_bytes: int, chunk_spans: int = CHUNK_SPANS) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.chunk_spans = chunk_spans
        self.pending = 0  # spans on disk not yet taken back into memory
        self.bytes = 0
        self._pid = os.getpid()
        self._seq = 0
        self._fd: int | None = None
        self._open_path: Path | None = None
        self._open_count = 0
        self._open_synced = False  # the open chunk's directory entry is on disk
        self._home_synced = False  # the spool directory's own entry is on disk
        self._ready: list[tuple[Path, int]] = []  # chunks to take, oldest first, with their span counts
        self._unsettled: dict[str, int] = {}  # taken chunk -> spans not yet committed

    def has_room(self) -> bool:
        """Room for a few more large spans (strict admission asks before a call)."""
        return self.bytes + min(HEADROOM_BYTES, self.max_bytes // 2) < self.max_bytes

    def append(self, span: dict[str, Any], *, sync: bool = False) -> bool:
        """Write one span to disk (fsync'd if `sync`); False when the spool is full or the disk refuses."""
        try:
            kept = {k: v for k, v in span.items() if not k.startswith("_fmops") or k == INGESTED}
            line = orjson.dumps(kept, default=str)
        except TypeError:
            return False
        if self.bytes + len(line) + 1 > self.max_bytes:
            return False
        try:
            if self._fd is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._seq += 1
                self._open_path = self.directory / f"{self._pid}-{self._seq}.open"
                self._fd = os.open(self._open_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                self._open_synced = False
            os.write(self._fd, line + b"\n")
            if sync:
                self._sync()
        except OSError as exc:
            log.error("trace spool write failed", extra={"error": str(exc)})
            return False
        self.bytes += len(line) + 1
        self.pending += 1
        self._open_count += 1
        if self._open_count >= self.chunk_spans:
            self._seal()
        return True

    def _sync(self) -> None:
        """The open chunk's contents, and the directory entries leading to it, onto the disk."""
        assert self._fd is not None
        os.fsync(self._fd)
        if not self._open_synced:
            _fsync_dir(self.directory)
            self._open_synced = True
        if not self._home_synced:
            _fsync_dir(self.directory.parent)  # the spool folder may be new too
            self._home_synced = True

    def _seal(self) -> None:
        if self._fd is None or self._open_path is None:
            return
        os.close(self._fd)
        ready = self._open_path.with_suffix(".ready")
        os.replace(self._open_path, ready)
        self._ready.append((ready, self._open_count))
        self._fd, self._open_path, self._open_count = None, None, 0

    def take(self, limit: int) -> list[dict[str, Any]]:
        """Spans from the oldest chunks, about `limit` of them (whole chunks), each marked with its chunk."""
        if not self._ready:
            self._seal()
        spans: list[dict[str, Any]] = []
        while self._ready and (not spans or len(spans) + self._ready[0][1] <= limit):
            path, count = self._ready.pop(0)
            taken = path.with_suffix(".taken")
            os.replace(path, taken)
            rows = _read(taken)
            self.pending -= count
            self.bytes -= taken.stat().st_size
            if not rows:
                taken.unlink(missing_ok=True)
                continue
            self._unsettled[str(taken)] = len(rows)
            for row in rows:
                row[SPOOL_MARK] = str(taken)
            spans.extend(rows)
        return spans

    def settled(self, chunk: str) -> None:
        """One span of a taken chunk is committed (or refused for good); the last one removes the chunk."""
        left = self._unsettled.get(chunk, 0) - 1
        if left > 0:
            self._unsettled[chunk] = left
            return
        self._unsettled.pop(chunk, None)
        with contextlib.suppress(OSError):
            os.unlink(chunk)

    def adopt_orphans(self) -> None:
        """Take over the chunks of processes that are gone (killed, or stopped with the database away)."""
        if not self.directory.is_dir():
            return
        for path in sorted(self.directory.iterdir(), key=lambda p: p.stat().st_mtime):
            owner = path.name.partition("-")[0]
            if path.suffix not in (".open", ".ready", ".taken") or not owner.isdigit():
                continue
            if int(owner) != self._pid and _alive(int(owner)):
                continue
            self._seq += 1
            ready = self.directory / f"{self._pid}-{self._seq}.ready"
            try:
                os.replace(path, ready)
                with ready.open("rb") as lines:
                    count = sum(1 for _ in lines)
                size = ready.stat().st_size
            except OSError:
                continue
            self._ready.append((ready, count))
            self.pending += count
            self.bytes += size
        if self._ready:
            log.warning("adopted spooled spans from an earlier run", extra={"spans": self.pending})

    def close(self) -> None:
        self._seal()


def _read(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with path.open("rb") as lines:
        for line in lines:
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # the line a killed process was writing
            for name in _TIMES:
                if isinstance(row.get(name), str):
                    row[name] = datetime.fromisoformat(row[name])
            rows.append(row)
    return rows


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
