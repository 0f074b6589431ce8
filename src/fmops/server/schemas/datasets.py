"""Bodies of the datasets API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fmops.server.schemas.base import Output


class DatasetPublic(Output):
    id: str
    name: str
    kind: str
    description: str | None
    latest_version: int
    rows: int  # of the newest version
    created_at: datetime
    updated_at: datetime


class VersionPublic(Output):
    id: str
    dataset_id: str
    name: str
    version: int
    ref: str  # NAME@VERSION
    kind: str
    rows: int
    content_hash: str
    parent_id: str | None
    source: dict[str, Any]
    recipe: dict[str, Any] | None
    step: dict[str, Any] | None
    counts: dict[str, Any]
    report: dict[str, Any] | None
    size_bytes: int
    created_by_key_id: str | None
    created_at: datetime


class Imported(Output):
    version: VersionPublic
    created: bool  # false: the same records and source as the newest version, which is returned
    format: str
    shape: str
    detection: str
    rows_read: int
    skipped: int
    problems: list[str]  # the first skipped rows, "line 7: why"


class Row(Output):
    row: int  # from 0, in the version's order
    record: dict[str, Any]


class RowPage(Output):
    offset: int
    limit: int
    total: int | None  # the version's rows; null with a search (matches are not counted)
    has_more: bool
    rows: list[Row]


class DiffPublic(Output):
    a: VersionPublic
    b: VersionPublic
    added: int
    removed: int
    unchanged: int
    added_examples: list[dict[str, Any]]
    removed_examples: list[dict[str, Any]]
