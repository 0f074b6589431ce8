"""Reading rows out of files without holding them: JSONL, CSV, Parquet and saved HF datasets.

Each reader yields `Row`s one at a time with where they came from (`line 7`, `row 7`), so a bad
row is reported by its number; a row that cannot be read at all (bad JSON, invalid UTF-8) is a
`Row` with an error, which the import skips or refuses as the user chose. Memory holds one line,
one CSV record or one Arrow batch, whatever the file's size.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from fmops.errors import UserError

FORMATS = ("jsonl", "csv", "parquet", "hf")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}
MAX_LINE_BYTES = 64 * 1024 * 1024  # one record; a longer line is a file that is not JSONL
_ARROW_BATCH = 1000
_BOM = b"\xef\xbb\xbf"


class Row(NamedTuple):
    """One row read: its value, or why it could not be read. (A tuple: made once per row.)"""

    number: int  # from 1
    value: dict[str, Any] | None
    error: str | None = None
    unit: str = "line"  # "line" (JSONL), "row", "train row" (a split of a saved HF DatasetDict)

    @property
    def where(self) -> str:
        return f"{self.unit} {self.number}"


def detect_format(path: Path) -> str:
    """The format of a file or folder, from its name (a folder: a saved HF dataset)."""
    if path.is_dir():
        if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
            return "hf"
        raise UserError(
            f"{path} is a folder but not a saved Hugging Face dataset (no state.json or dataset_dict.json)",
            param="file",
        )
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise UserError(
            f"cannot tell the format of {path.name}: use a .jsonl, .csv or .parquet file, a folder written "
            f"by datasets' save_to_disk, or name the format with --format ({', '.join(FORMATS)})",
            param="format",
        )
    return fmt


def read_rows(path: Path, fmt: str) -> Iterator[Row]:
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}", param="format")
    if fmt != "hf" and not path.is_file():
        raise UserError(f"{path} is not a file", param="file")
    readers = {"jsonl": _jsonl, "csv": _csv, "parquet": _parquet, "hf": _hf}
    return readers[fmt](path)


def _array(path: Path) -> UserError:
    return UserError(
        f"{path.name} is a JSON array, not JSON Lines: write one object per line "
        "(e.g. `jq -c '.[]' file.json > file.jsonl`)",
        param="file",
    )


def _jsonl(path: Path) -> Iterator[Row]:
    with path.open("rb") as handle:
        number = 0
        while True:
            line = handle.readline(MAX_LINE_BYTES + 1)
            if not line:
                return
            number += 1
            if len(line) > MAX_LINE_BYTES:
                raise UserError(
                    f"line {number} of {path.name} is longer than {MAX_LINE_BYTES // 2**20} MiB: "
                    "is it JSONL (one JSON object per line)?",
                    param="file",
                )
            if number == 1 and line.startswith(_BOM):
                line = line[len(_BOM) :]
            if not line or line.isspace():  # not strip(): no copy of every line
                continue
            try:
                value = orjson.loads(line)  # checks UTF-8 itself: no decoded copy of the line
            except orjson.JSONDecodeError as exc:
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError as bad:
                    yield Row(number, None, f"not valid UTF-8 (byte {bad.start + 1} of the line)")
                    continue
                if number == 1 and text.lstrip().startswith("["):
                    raise _array(path) from None
                yield Row(number, None, f"not valid JSON ({exc.msg})")
                continue
            if number == 1 and isinstance(value, list):
                raise _array(path)
            if not isinstance(value, dict):
                yield Row(number, None, "not a JSON object")
                continue
            yield Row(number, value)


def _text_lines(path: Path) -> Iterator[str]:
    """Lines decoded one at a time, so invalid UTF-8 is reported at its own line (not a buffer's)."""
    with path.open("rb") as handle:
        number = 0
        while True:
            line = handle.readline(MAX_LINE_BYTES + 1)
            if not line:
                return
            number += 1
            if len(line) > MAX_LINE_BYTES:
                raise UserError(f"line {number} of {path.name} is longer than 64 MiB", param="file")
            if number == 1 and line.startswith(_BOM):
                line = line[len(_BOM) :]
            try:
                yield line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UserError(
                    f"{path.name} is not valid UTF-8 at line {number} (byte {exc.start + 1}): "
                    "save it as UTF-8",
                    param="file",
                ) from None


def _csv(path: Path) -> Iterator[Row]:
    csv.field_size_limit(min(sys.maxsize, MAX_LINE_BYTES))
    reader = csv.DictReader(_text_lines(path))
    number = 0
    try:
        for record in reader:
            number += 1
            if None in record:
                yield Row(number, None, "more fields than the header has columns", "row")
                continue
            yield Row(number, {k: v for k, v in record.items() if k is not None}, None, "row")
    except csv.Error as exc:
        raise UserError(f"{path.name}: bad CSV at line {reader.line_num}: {exc}", param="file") from None


def _batches(batches: Iterator[pa.RecordBatch], label: str) -> Iterator[Row]:
    number = 0
    unit = f"{label}row"
    for batch in batches:
        for value in batch.to_pylist():
            number += 1
            yield Row(number, value, None, unit)


def _parquet(path: Path) -> Iterator[Row]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"{path.name} is not a readable Parquet file: {exc}", param="file") from None
    return _batches(parquet.iter_batches(batch_size=_ARROW_BATCH), "")


def _arrow_file(path: Path) -> Iterator[pa.RecordBatch]:
    """An Arrow file as `save_to_disk` writes it (the IPC stream format; the file format also read)."""
    with pa.memory_map(str(path)) as source:
        try:
            reader: Any = pa.ipc.open_stream(source)
        except pa.ArrowInvalid:
            source.seek(0)
            reader = pa.ipc.open_file(source)
            for index in range(reader.num_record_batches):
                yield reader.get_batch(index)
            return
        yield from reader


def _split_files(folder: Path) -> list[Path]:
    try:
        state = orjson.loads((folder / "state.json").read_bytes())
        names = [entry["filename"] for entry in state["_data_files"]]
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"{folder}/state.json is not a saved dataset's state: {exc}", param="file") from None
    files = []
    for name in names:
        file = (folder / str(name)).resolve()
        if file.parent != folder.resolve() or not file.is_file():  # a state.json pointing elsewhere
            raise UserError(f"{folder}/state.json names a missing or outside file {name!r}", param="file")
        files.append(file)
    return files


def _hf(path: Path) -> Iterator[Row]:
    """`Dataset.save_to_disk` (state.json + .arrow files) or `DatasetDict.save_to_disk` (a folder per
    split, listed in dataset_dict.json); a split's name goes into each record's metadata."""
    if (path / "dataset_dict.json").is_file():
        try:
            splits = orjson.loads((path / "dataset_dict.json").read_bytes())["splits"]
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise UserError(f"{path}/dataset_dict.json is unreadable: {exc}", param="file") from None
        for split in splits:
            folder = path / str(split)
            if not folder.is_dir() or folder.resolve().parent != path.resolve():
                raise UserError(f"{path}/dataset_dict.json names a missing split {split!r}", param="file")
            for row in _hf_split(folder, f"{split} "):
                if row.value is not None:
                    meta = row.value.get("metadata")
                    meta = dict(meta) if isinstance(meta, dict) else {}
                    meta.setdefault("split", str(split))
                    row = row._replace(value={**row.value, "metadata": meta})
                yield row
        return
    yield from _hf_split(path, "")


def _hf_split(folder: Path, label: str) -> Iterator[Row]:
    def batches() -> Iterator[pa.RecordBatch]:
        for file in _split_files(folder):
            yield from _arrow_file(file)

    return _batches(batches(), label)
