"""Versions written out for other tools: JSONL in the shape TRL and OpenAI's fine-tuning API read,
Parquet with nested columns, and a Hugging Face `datasets` folder (`save_to_disk`).

    chat        {"messages": [...]} (+ "tools" when the record has them)
    completion  {"prompt": ..., "completion": ...}
    preference  {"prompt": [...], "chosen": [...], "rejected": [...]}
    eval        {"input": ..., "expected": ...}

JSONL carries only those fields (OpenAI's API refuses unknown keys); Parquet and HF add `metadata`
as JSON text (where `split` lives). Streamed a batch at a time, written under a temporary name and
renamed, so a failed export leaves no half file at the destination.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from fmops.datasets.records import RecordKind
from fmops.datasets.service import DatasetService, VersionInfo
from fmops.errors import UserError

EXPORT_FORMATS = ("jsonl", "parquet", "hf")
INSTALL_HF = "--format hf needs the Hugging Face datasets library: pip install 'fmops[hf]'"
_MESSAGE = pa.struct(
    [
        ("role", pa.string()),
        ("content", pa.string()),
        ("name", pa.string()),
        ("tool_call_id", pa.string()),
        ("tool_calls", pa.string()),  # JSON text
    ]
)
_MESSAGES = pa.list_(_MESSAGE)
PARQUET_SCHEMAS = {
    RecordKind.chat: pa.schema([("messages", _MESSAGES), ("tools", pa.string()), ("metadata", pa.string())]),
    RecordKind.completion: pa.schema(
        [("prompt", pa.string()), ("completion", pa.string()), ("metadata", pa.string())]
    ),
    RecordKind.preference: pa.schema(
        [("prompt", _MESSAGES), ("chosen", _MESSAGES), ("rejected", _MESSAGES), ("metadata", pa.string())]
    ),
    # An eval input is text or messages; JSON text holds both without a union type.
    RecordKind.eval: pa.schema(
        [("input", pa.string()), ("expected", pa.string()), ("metadata", pa.string())]
    ),
}


def export_record(kind: RecordKind, record: dict[str, Any]) -> dict[str, Any]:
    """A record in the shape fine-tuning tools read (no metadata)."""
    if kind is RecordKind.chat:
        out: dict[str, Any] = {"messages": record["messages"]}
        if record.get("tools"):
            out["tools"] = record["tools"]
        return out
    if kind is RecordKind.completion:
        return {"prompt": record["prompt"], "completion": record["completion"]}
    if kind is RecordKind.preference:
        return {"prompt": record["prompt"], "chosen": record["chosen"], "rejected": record["rejected"]}
    return {"input": record["input"], "expected": record.get("expected")}


def jsonl_lines(service: DatasetService, version: VersionInfo) -> Iterator[bytes]:
    """The version as JSON Lines, a batch of lines at a time."""
    for batch in service.iter_records(version):
        yield b"".join(orjson.dumps(export_record(version.kind, r)) + b"\n" for r in batch)


def _json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "role": m["role"],
            "content": m["content"],
            "name": m.get("name"),
            "tool_call_id": m.get("tool_call_id"),
            "tool_calls": _json_text(m.get("tool_calls")),
        }
        for m in messages
    ]


def _parquet_row(kind: RecordKind, record: dict[str, Any]) -> dict[str, Any]:
    meta = orjson.dumps(record.get("metadata") or {}).decode()
    if kind is RecordKind.chat:
        return {
            "messages": _messages(record["messages"]),
            "tools": _json_text(record.get("tools")),
            "metadata": meta,
        }
    if kind is RecordKind.completion:
        return {"prompt": record["prompt"], "completion": record["completion"], "metadata": meta}
    if kind is RecordKind.preference:
        return {f: _messages(record[f]) for f in ("prompt", "chosen", "rejected")} | {"metadata": meta}
    value = record["input"]
    return {
        "input": value if isinstance(value, str) else orjson.dumps(value).decode(),
        "expected": _json_text(record.get("expected")),
        "metadata": meta,
    }


def _staging(out: Path, force: bool) -> Path:
    if out.exists() and not force:
        raise UserError(f"{out} exists; pass --force to replace it", param="out")
    if not out.parent.is_dir():
        raise UserError(f"{out.parent} is not a folder", param="out")
    return out.parent / f".{out.name}.{os.getpid()}.partial"


def _replace(staged: Path, out: Path) -> None:
    if out.is_dir():
        shutil.rmtree(out)
    os.replace(staged, out)


def write_jsonl(service: DatasetService, version: VersionInfo, out: Path, *, force: bool = False) -> None:
    staged = _staging(out, force)
    try:
        with staged.open("wb") as handle:
            for chunk in jsonl_lines(service, version):
                handle.write(chunk)
        _replace(staged, out)
    finally:
        staged.unlink(missing_ok=True)


def write_parquet_to(service: DatasetService, version: VersionInfo, sink: Any) -> None:
    """The version as Parquet with nested columns (`PARQUET_SCHEMAS`) into a path or binary file."""
    schema = PARQUET_SCHEMAS[version.kind]
    with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
        for batch in service.iter_records(version, batch_size=5000):
            rows = [_parquet_row(version.kind, r) for r in batch]
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))


def write_parquet(service: DatasetService, version: VersionInfo, out: Path, *, force: bool = False) -> None:
    staged = _staging(out, force)
    try:
        write_parquet_to(service, version, str(staged))
        _replace(staged, out)
    finally:
        staged.unlink(missing_ok=True)


def write_hf(service: DatasetService, version: VersionInfo, out: Path, *, force: bool = False) -> None:
    """A folder `datasets.load_from_disk` opens (needs the `hf` extra)."""
    try:
        import datasets
    except ImportError:
        raise UserError(INSTALL_HF, param="format") from None
    staged = _staging(out, force)
    datasets.disable_progress_bars()  # the CLI reports what it wrote itself
    with tempfile.TemporaryDirectory(prefix="fmops-export-") as work:
        parquet = Path(work) / "data.parquet"
        write_parquet_to(service, version, str(parquet))
        # A cache of its own, so nothing lands in ~/.cache/huggingface.
        loaded = datasets.Dataset.from_parquet(str(parquet), cache_dir=str(Path(work) / "cache"))
        try:
            loaded.save_to_disk(str(staged))
            _replace(staged, out)
        finally:
            if staged.exists():
                shutil.rmtree(staged)


def export_version(
    service: DatasetService, version: VersionInfo, fmt: str, out: Path, *, force: bool = False
) -> None:
    writers = {"jsonl": write_jsonl, "parquet": write_parquet, "hf": write_hf}
    if fmt not in writers:
        raise UserError(
            f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}", param="format"
        )
    writers[fmt](service, version, out, force=force)
