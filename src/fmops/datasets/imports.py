"""`fmops data import`: a file (or a saved HF dataset folder) streamed into a new dataset version.

The first readable row decides the shape (shown to the user); every row is normalised and
validated as it passes. Bad rows are reported by line or row number: by default the import is
refused (up to `MAX_REPORTED` problems listed, nothing kept); with `on_error="skip"` they are left
out, counted, and the first ones kept in the version's report.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, Literal

from fmops.datasets.readers import Row, detect_format, read_rows
from fmops.datasets.records import RecordKind, validate_record
from fmops.datasets.service import DatasetService, VersionInfo
from fmops.datasets.shapes import DEFAULT_KIND, Shape, check_conversion, detect_shape, normalise, plain_reader
from fmops.errors import UserError

OnError = Literal["fail", "skip"]
MAX_REPORTED = 10  # problems listed when an import is refused
MAX_KEPT = 50  # problems kept in a version's report when they were skipped
# Records handed to the writer at once: so few that they die young. With 1,000, each batch outlived
# several collections and was promoted, and the cyclic GC took a fifth of the import's CPU time.
BATCH = 20


@dataclass
class ImportResult:
    version: VersionInfo
    format: str
    shape: Shape
    kind: RecordKind
    rows_read: int
    skipped: int
    problems: list[str] = field(default_factory=list)  # the first MAX_KEPT, "line 7: why"

    @property
    def detection(self) -> str:
        return f"format {self.format}, shape {self.shape} -> {self.kind} records"


class _Tally:
    def __init__(self, on_error: OnError) -> None:
        self.on_error = on_error
        self.read = 0
        self.problems: list[str] = []
        self.skipped = 0

    def problem(self, where: str, reason: str) -> None:
        self.skipped += 1
        limit = MAX_REPORTED if self.on_error == "fail" else MAX_KEPT
        if len(self.problems) < limit:
            self.problems.append(f"{where}: {reason}")
        if self.on_error == "fail" and self.skipped >= MAX_REPORTED:
            self.refuse(more=True)

    def refuse(self, *, more: bool = False) -> None:
        listed = "; ".join(self.problems)
        tail = " (and maybe more)" if more else ""
        raise UserError(
            f"{self.skipped} bad row(s){tail}: {listed}. "
            "Fix them, or pass --on-error skip to import the rest",
            param="file",
        )


def _first_readable(rows: Iterator[Row]) -> tuple[Row | None, list[Row]]:
    """The first row with a value, and the unreadable rows before it (to be reported in order)."""
    before: list[Row] = []
    for row in rows:
        if row.value is not None:
            return row, before
        before.append(row)
    return None, before


def import_file(
    service: DatasetService,
    *,
    project_id: str,
    path: Path,
    name: str,
    kind: RecordKind | None = None,
    fmt: str | None = None,
    on_error: OnError = "fail",
    created_by_key_id: str | None = None,
    file_name: str | None = None,
    description: str | None = None,
) -> ImportResult:
    """Import `path` as the next version of dataset `name`; `file_name` is what the lineage records
    (the uploaded file's name for API imports, else the file's own name; never a full path)."""
    if on_error not in ("fail", "skip"):
        raise UserError("on_error must be fail or skip", param="on_error")
    fmt = fmt or detect_format(path)
    tally = _Tally(on_error)
    rows = read_rows(path, fmt)
    first, unreadable = _first_readable(rows)
    if first is None or first.value is None:
        for row in unreadable:
            tally.problem(row.where, row.error or "unreadable")
        raise UserError(f"{file_name or path.name} holds no records", param="file")
    shape = detect_shape(first.value)
    kind = kind or DEFAULT_KIND[shape]
    check_conversion(shape, kind)
    text_cells = fmt == "csv"
    # CSV cells hold nested values as JSON text: those rows always take the general path.
    plain = None if text_cells else plain_reader(shape, kind)

    def records() -> Iterator[dict[str, Any]]:
        read = 0
        for row in chain(unreadable, [first], rows):
            read += 1
            value = row.value
            if value is None:
                tally.read = read
                tally.problem(row.where, row.error or "unreadable")
                continue
            if plain is not None and (record := plain(value)) is not None:
                yield record
                continue
            try:
                yield validate_record(kind, normalise(shape, kind, value, text_cells=text_cells))
            except ValueError as exc:
                tally.read = read
                tally.problem(row.where, str(exc))
        tally.read = read

    def batches() -> Iterator[list[dict[str, Any]]]:
        batch: list[dict[str, Any]] = []
        for record in records():
            batch.append(record)
            if len(batch) >= BATCH:
                yield batch
                batch = []
        if batch:
            yield batch
        # Every row is read before the version is committed: a refusal here keeps nothing.
        if tally.problems and on_error == "fail":
            tally.refuse()
        if tally.read == tally.skipped:
            raise UserError(f"no valid records in {file_name or path.name}: {'; '.join(tally.problems)}")
        counts.update({"in": tally.read, "out": tally.read - tally.skipped, "skipped": tally.skipped})
        if tally.problems:
            report["skipped"] = list(tally.problems)

    # Filled in when the last batch has been read, before the version is committed.
    counts: dict[str, Any] = {"in": 0, "out": 0, "skipped": 0}
    report: dict[str, Any] = {}

    version = service.create_version(
        project_id=project_id,
        name=name,
        kind=kind,
        batches=batches(),
        source={"type": "import", "file": file_name or path.name, "format": fmt, "shape": shape.value},
        counts=counts,
        report=report,
        created_by_key_id=created_by_key_id,
        description=description,
        validate=False,
    )
    return ImportResult(version, fmt, shape, kind, tally.read, tally.skipped, tally.problems)
