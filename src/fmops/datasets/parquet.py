"""How records of each kind are laid out in Parquet, and the streaming writer of a version's file.

Nested values (messages, tools, metadata, eval inputs and expectations) are stored as JSON text,
one column per field, plus `_hash` (each record's 16-byte identity). Measured on 200,000 chat
records against Arrow `list<struct<role, content>>` columns: writes 3.0x faster (0.36 s against
1.07 s), reads to dicts the same (1.38 s against 1.32 s), files 1.6x larger; and JSON keeps any
extra message field or metadata shape without a schema change. Exports write the natural nested
layout for other tools (see export.py).
"""

from __future__ import annotations

import contextlib
import hashlib
from array import array
from collections.abc import Iterable, Sequence
from itertools import accumulate
from typing import IO, Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fmops.datasets.records import FIELDS, HASH_BYTES, PLAIN_FIELDS, RecordKind, encode_fields, hash_fields

HASH_COLUMN = "_hash"
ROW_GROUP_ROWS = 5_000  # a page read decodes at most one or two groups of this size


def _is_json(kind: RecordKind, field: str) -> bool:
    return field not in PLAIN_FIELDS[kind]


def schema(kind: RecordKind) -> pa.Schema:
    fields = [pa.field(f, pa.string(), nullable=f in ("tools", "expected")) for f in FIELDS[kind]]
    return pa.schema([*fields, pa.field(HASH_COLUMN, pa.binary(HASH_BYTES), nullable=False)])


def encode(kind: RecordKind, rows: list[list[bytes | None]], hashes: list[bytes]) -> pa.Table:
    """Encoded records (`encode_fields`, UTF-8 bytes) to an Arrow table of `schema(kind)`."""
    names = FIELDS[kind]
    by_field = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays: list[Any] = [_strings(values) for values in by_field]
    digests = pa.py_buffer(b"".join(hashes))
    arrays.append(pa.FixedSizeBinaryArray.from_buffers(pa.binary(HASH_BYTES), len(hashes), [None, digests]))
    return pa.Table.from_arrays(arrays, schema=schema(kind))


def _strings(values: Sequence[bytes | None]) -> pa.Array | pa.ChunkedArray:
    """A string column from UTF-8 bytes, laid out straight into Arrow's buffers (offsets and data):
    ten times cheaper than converting each value. The bytes are valid UTF-8 by construction
    (orjson's output, or Python strings encoded), so no check is needed."""
    if None in values:
        if all(v is None for v in values):
            return pa.nulls(len(values), pa.string())
        return pa.array(values, type=pa.binary()).cast(pa.string())
    data = b"".join(values)  # type: ignore[arg-type]  # no None, checked above
    if len(data) >= 2**31:  # past 32-bit offsets: Arrow splits it into chunks
        return pa.array(values, type=pa.string())  # bytes taken as UTF-8
    offsets = array("i", accumulate(map(len, values), initial=0))  # type: ignore[arg-type]
    return pa.StringArray.from_buffers(len(values), pa.py_buffer(offsets), pa.py_buffer(data))


def decode(kind: RecordKind, table: pa.Table | pa.RecordBatch) -> list[dict[str, Any]]:
    """Rows of a stored table back to record dicts (only the record fields present in `table`)."""
    names = [f for f in FIELDS[kind] if f in table.schema.names]
    values = []
    for field in names:
        column = table.column(field).to_pylist()
        if _is_json(kind, field):
            column = [None if v is None else orjson.loads(v) for v in column]
        values.append(column)
    return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]


def search_mask(kind: RecordKind, table: pa.Table, term: str) -> pa.ChunkedArray:
    """Rows whose text holds `term` (case-insensitive), in any record field."""
    # JSON columns hold the term JSON-escaped (quotes, backslashes, newlines), so search it that way.
    escaped = orjson.dumps(term).decode()[1:-1]
    mask: Any = None
    for field in FIELDS[kind]:
        if field not in table.schema.names:
            continue
        pattern = escaped if _is_json(kind, field) else term
        hit = pc.fill_null(pc.match_substring(table.column(field), pattern, ignore_case=True), False)
        mask = hit if mask is None else pc.or_(mask, hit)
    return mask


class VersionWriter:
    """Streams validated records into one Parquet file in row groups; hashes them as they pass.

    Memory holds at most one row group of records, whatever the number of rows.
    """

    def __init__(self, kind: RecordKind, sink: IO[bytes]) -> None:
        self.kind = kind
        self.rows = 0
        self._digest = hashlib.sha256(kind.value.encode())
        self._pending: list[list[bytes | None]] = []
        self._hashes: list[bytes] = []
        self._writer = pq.ParquetWriter(sink, schema(kind), compression="zstd")

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        """Normalised records (already validated) appended in order."""
        kind, pending, hashes = self.kind, self._pending, self._hashes
        for record in records:
            fields = encode_fields(kind, record)  # encoded once: stored and hashed
            pending.append(fields)
            hashes.append(hash_fields(fields))
            if len(pending) >= ROW_GROUP_ROWS:
                self._flush()
                pending, hashes = self._pending, self._hashes

    def _flush(self) -> None:
        if self._pending:
            # The version's hash is over its records' hashes in order: one update per row group.
            self._digest.update(b"".join(self._hashes))
            self._writer.write_table(encode(self.kind, self._pending, self._hashes))
            self.rows += len(self._pending)
            self._pending, self._hashes = [], []

    def close(self) -> str:
        """Finish the file; the version's content hash (hex)."""
        self._flush()
        self._writer.close()
        return self._digest.hexdigest()

    def abort(self) -> None:
        with contextlib.suppress(Exception):  # the file is being thrown away
            self._writer.close()
