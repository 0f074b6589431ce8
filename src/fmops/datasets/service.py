"""Datasets of a project: versions written as Parquet in the artifact store, read back in pages.

A version appears whole or not at all: its file is written under a temporary key and moved into
place, and only then is its row committed. A crash in between leaves an orphaned file that no row
points at (harmless; `sweep` removes it), never a row without its file.

Re-creating the newest version: when the records hash to the dataset's newest version *and* the
lineage (parent, source, recipe, step) is the same, no version is made and the newest is returned
(`reused=True`), so importing one file twice is a no-op. The same records reached another way
(another parent, another step) are a new version: lineage is part of what a version says.
"""

from __future__ import annotations

import builtins
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fmops.artifacts import ArtifactStore
from fmops.datasets.parquet import HASH_COLUMN, VersionWriter, decode, search_mask
from fmops.datasets.records import FIELDS, RecordKind, parse_kind, validate_record
from fmops.errors import Conflict, NotFound, UserError
from fmops.store import Store, new_id, utcnow
from fmops.store.models import Dataset, DatasetVersion

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
_NAME = re.compile(NAME_PATTERN)
_ID = re.compile(r"^[0-9a-f]{32}$")
_SHOWN = 20  # names listed in a 404's message
_EXAMPLES = 5  # rows shown per side of a diff
PREFIX = "datasets"

__all__ = [
    "NAME_PATTERN",
    "DatasetDiff",
    "DatasetInfo",
    "DatasetService",
    "Page",
    "VersionInfo",
    "check_name",
]


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise UserError(
            f"invalid dataset name {name!r}: use 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            param="name",
        )
    return name


@dataclass(frozen=True)
class VersionInfo:
    id: str
    dataset_id: str
    name: str
    version: int
    kind: RecordKind
    rows: int
    content_hash: str
    parent_id: str | None
    source: dict[str, Any]
    recipe: dict[str, Any] | None
    step: dict[str, Any] | None
    counts: dict[str, Any]
    report: dict[str, Any] | None
    created_at: datetime
    path: str  # artifact key of the Parquet file
    size_bytes: int = 0
    created_by_key_id: str | None = None
    reused: bool = False  # create_version found the same records and lineage as the newest version

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class DatasetInfo:
    id: str
    name: str
    kind: RecordKind
    description: str | None
    latest_version: int
    rows: int  # of the newest version
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Page:
    """Rows `(row number from 0, record)`; with a search, the matching rows in order."""

    rows: list[tuple[int, dict[str, Any]]]
    offset: int
    limit: int
    total: int | None  # the version's rows (None with a search: not counted)
    has_more: bool


@dataclass(frozen=True)
class DatasetDiff:
    a: VersionInfo
    b: VersionInfo
    added: int  # rows of b whose record is not in a
    removed: int  # rows of a whose record is not in b
    unchanged: int  # rows of b whose record is also in a
    added_examples: list[dict[str, Any]] = field(default_factory=list)
    removed_examples: list[dict[str, Any]] = field(default_factory=list)


def _info(dataset: Dataset, row: DatasetVersion, *, reused: bool = False) -> VersionInfo:
    return VersionInfo(
        id=row.id,
        dataset_id=row.dataset_id,
        name=dataset.name,
        version=row.version,
        kind=RecordKind(row.kind),
        rows=row.rows,
        content_hash=row.content_hash,
        parent_id=row.parent_id,
        source=dict(row.source or {}),
        recipe=row.recipe,
        step=row.step,
        counts=dict(row.counts or {}),
        report=row.report,
        created_at=row.created_at,
        path=row.path,
        size_bytes=row.size_bytes,
        created_by_key_id=row.created_by_key_id,
        reused=reused,
    )


def _listing(names: builtins.list[str]) -> str:
    if not names:
        return "none yet"
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


class DatasetService:
    def __init__(self, store: Store, artifacts: ArtifactStore) -> None:
        self.store = store
        self.artifacts = artifacts

    # -- writes --------------------------------------------------------------------------------

    def create_version(
        self,
        *,
        project_id: str,
        name: str,
        kind: RecordKind | str,
        batches: Iterable[builtins.list[dict[str, Any]]],
        parent_id: str | None = None,
        source: dict[str, Any] | None = None,
        recipe: dict[str, Any] | None = None,
        step: dict[str, Any] | None = None,
        counts: dict[str, Any] | None = None,
        report: dict[str, Any] | None = None,
        created_by_key_id: str | None = None,
        description: str | None = None,
        validate: bool = True,
    ) -> VersionInfo:
        """Stream `batches` into a new version of dataset `name` (created on first use).

        Every record is validated (a bad one is a UserError naming its number, from 1, and nothing
        is kept); `validate=False` is for callers whose records came out of `validate_record`.
        `counts` and `report` are read after the last batch, so a streaming caller may fill them in
        as its records pass.
        """
        check_name(name)
        kind = parse_kind(kind) if isinstance(kind, str) else kind
        self._check_target(project_id, name, kind, parent_id)
        version_id = new_id()
        key = f"{PREFIX}/{project_id}/{version_id}.parquet"
        with self.artifacts.open_write(key) as sink:
            writer = VersionWriter(kind, sink)
            try:
                number = 0
                for batch in batches:
                    if validate:
                        checked = []
                        for record in batch:
                            number += 1
                            try:
                                checked.append(validate_record(kind, record))
                            except ValueError as exc:
                                raise UserError(f"record {number}: {exc}", param="records") from None
                        batch = checked
                    writer.write(batch)
                content_hash = writer.close()
            except BaseException:
                writer.abort()
                raise
        lineage = {
            "parent_id": parent_id,
            "source": source or {},
            "recipe": recipe,
            "step": step,
        }
        try:
            info = self._commit(
                project_id,
                name,
                kind,
                DatasetVersion(
                    id=version_id,
                    kind=kind.value,
                    rows=writer.rows,
                    content_hash=content_hash,
                    counts=counts or {},
                    report=report or None,
                    path=key,
                    size_bytes=self.artifacts.size(key),
                    created_by_key_id=created_by_key_id,
                    created_at=utcnow(),
                    **lineage,
                ),
                description,
            )
        except BaseException:
            self.artifacts.delete(key)
            raise
        if info.reused:
            self.artifacts.delete(key)
        return info

    def _check_target(self, project_id: str, name: str, kind: RecordKind, parent_id: str | None) -> None:
        """Refuse before writing anything: a dataset of another kind, a parent that does not exist."""
        with self.store.session() as session:
            dataset = self._find(session, project_id, name)
            if dataset is not None and dataset.kind != kind.value:
                raise Conflict(
                    f"dataset {name!r} holds {dataset.kind} records, not {kind}; use another name",
                    param="kind",
                )
            if parent_id is not None and self._version_by_id(session, project_id, parent_id) is None:
                raise NotFound(f"no dataset version {parent_id!r} in this project", param="parent_id")

    def _commit(
        self, project_id: str, name: str, kind: RecordKind, row: DatasetVersion, description: str | None
    ) -> VersionInfo:
        for attempt in range(3):  # two first versions of one new dataset: the loser retries
            try:
                return self._commit_once(project_id, name, kind, row, description)
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _commit_once(
        self, project_id: str, name: str, kind: RecordKind, row: DatasetVersion, description: str | None
    ) -> VersionInfo:
        with self.store.write() as session:
            dataset = self._find(session, project_id, name, lock=True)
            if dataset is None:
                dataset = Dataset(
                    project_id=project_id,
                    name=name,
                    kind=kind.value,
                    description=description,
                    latest_version=0,
                    created_at=utcnow(),
                    updated_at=utcnow(),
                )
                session.add(dataset)
                session.flush()
            elif dataset.kind != kind.value:
                raise Conflict(f"dataset {name!r} holds {dataset.kind} records, not {kind}", param="kind")
            newest = self._version_row(session, dataset, dataset.latest_version)
            if newest is not None and _same(newest, row):
                return _info(dataset, newest, reused=True)
            fresh = DatasetVersion(
                **{
                    c.name: getattr(row, c.name)
                    for c in DatasetVersion.__table__.columns
                    if c.name != "version"
                }
            )
            fresh.dataset_id = dataset.id
            fresh.version = dataset.latest_version + 1
            session.add(fresh)
            dataset.latest_version = fresh.version
            dataset.updated_at = utcnow()
            if description is not None:
                dataset.description = description
            session.flush()
            return _info(dataset, fresh)

    def delete_dataset(self, project_id: str, name: str) -> DatasetInfo:
        """Delete a dataset, its versions and their files; children in other datasets keep their rows."""
        with self.store.write() as session:
            dataset = self._dataset(session, project_id, name, lock=True)
            rows = session.scalars(
                select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id)
            ).all()
            info = self._dataset_info(dataset, self._version_row(session, dataset, dataset.latest_version))
            paths = [r.path for r in rows]
            session.delete(dataset)  # versions go with it (ON DELETE CASCADE)
        for path in paths:  # after the commit: a failure here leaves orphans for sweep, not dangling rows
            self.artifacts.delete(path)
        return info

    def sweep(self, older_than_seconds: float = 3600.0) -> builtins.list[str]:
        """Remove files no version points at (a crash between writing a file and its row), and
        temporary files of crashed writers, older than `older_than_seconds`; the keys removed."""
        removed = self.artifacts.sweep_partials(PREFIX, older_than_seconds)
        cutoff = time.time() - older_than_seconds
        keys = [k for k in self.artifacts.keys(PREFIX) if k.endswith(".parquet")]
        with self.store.session() as session:
            known = set(session.scalars(select(DatasetVersion.path).where(DatasetVersion.path.in_(keys))))
        for key in keys:
            if key not in known and self.artifacts.modified(key) < cutoff:
                self.artifacts.delete(key)
                removed.append(key)
        return removed

    # -- reads ---------------------------------------------------------------------------------

    def resolve(self, project_id: str, ref: str) -> VersionInfo:
        """`name` (the newest version), `name@3`, `name@latest`, or a version id."""
        with self.store.session() as session:
            if "@" in ref:
                name, _, number = ref.rpartition("@")
                dataset = self._dataset(session, project_id, name)
                if number == "latest":
                    version = dataset.latest_version
                elif number.isdigit() and len(number) < 10:
                    version = int(number)
                else:
                    raise UserError(f"invalid version {number!r} in {ref!r}: use NAME@NUMBER", param="ref")
                row = self._version_row(session, dataset, version)
                if row is None:
                    raise NotFound(
                        f"dataset {name!r} has no version {version} (newest: {dataset.latest_version})",
                        param="ref",
                    )
                return _info(dataset, row)
            if _ID.fullmatch(ref):
                found = self._version_by_id(session, project_id, ref)
                if found is not None:
                    return _info(*found)
            dataset = self._dataset(session, project_id, ref)
            row = self._version_row(session, dataset, dataset.latest_version)
            if row is None:
                raise NotFound(f"dataset {ref!r} has no versions", param="ref")
            return _info(dataset, row)

    def get(self, project_id: str, version_id: str) -> VersionInfo:
        with self.store.session() as session:
            found = self._version_by_id(session, project_id, version_id)
            if found is None:
                raise NotFound(f"no dataset version {version_id!r} in this project", param="id")
            return _info(*found)

    def list_datasets(self, project_id: str) -> builtins.list[DatasetInfo]:
        with self.store.session() as session:
            datasets = session.scalars(
                select(Dataset).where(Dataset.project_id == project_id).order_by(Dataset.name)
            ).all()
            rows = {
                v.dataset_id: v
                for v in session.scalars(
                    select(DatasetVersion)
                    .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
                    .where(Dataset.project_id == project_id, DatasetVersion.version == Dataset.latest_version)
                )
            }
            return [self._dataset_info(d, rows.get(d.id)) for d in datasets]

    def dataset(self, project_id: str, name: str) -> DatasetInfo:
        with self.store.session() as session:
            dataset = self._dataset(session, project_id, name)
            return self._dataset_info(dataset, self._version_row(session, dataset, dataset.latest_version))

    def list_versions(self, project_id: str, name: str) -> builtins.list[VersionInfo]:
        """Every version of a dataset, newest first."""
        with self.store.session() as session:
            dataset = self._dataset(session, project_id, name)
            rows = session.scalars(
                select(DatasetVersion)
                .where(DatasetVersion.dataset_id == dataset.id)
                .order_by(DatasetVersion.version.desc())
            ).all()
            return [_info(dataset, r) for r in rows]

    def lineage(self, project_id: str, version_id: str) -> builtins.list[VersionInfo]:
        """The version, then its parent, and so on to the root (a deleted parent ends the chain)."""
        chain: builtins.list[VersionInfo] = []
        seen: set[str] = set()
        current: str | None = version_id
        with self.store.session() as session:
            while current is not None and current not in seen:
                seen.add(current)
                found = self._version_by_id(session, project_id, current)
                if found is None:
                    if not chain:
                        raise NotFound(f"no dataset version {version_id!r} in this project", param="id")
                    break
                chain.append(_info(*found))
                current = found[1].parent_id
        return chain

    def children(self, project_id: str, version_id: str) -> builtins.list[VersionInfo]:
        """Versions made from this one (curation steps, splits), oldest first."""
        with self.store.session() as session:
            pairs = session.execute(
                select(Dataset, DatasetVersion)
                .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
                .where(Dataset.project_id == project_id, DatasetVersion.parent_id == version_id)
                .order_by(DatasetVersion.created_at)
            ).all()
            return [_info(d, v) for d, v in pairs]

    def _parquet(self, version: VersionInfo) -> pq.ParquetFile:
        return pq.ParquetFile(
            self.artifacts.full_path(version.path), filesystem=self.artifacts.arrow_filesystem()
        )

    def iter_records(
        self, version: VersionInfo, batch_size: int = 1000, columns: builtins.list[str] | None = None
    ) -> Iterator[builtins.list[dict[str, Any]]]:
        """The version's records in order, `batch_size` at a time (only `columns`, when given)."""
        fields = list(FIELDS[version.kind])
        if columns is not None:
            unknown = [c for c in columns if c not in fields]
            if unknown:
                raise UserError(f"unknown column {unknown[0]!r} for {version.kind} records", param="columns")
            fields = columns
        for batch in self._parquet(version).iter_batches(batch_size=batch_size, columns=fields):
            yield decode(version.kind, batch)

    def iter_hashes(self, version: VersionInfo) -> Iterator[pa.Array]:
        """Each record's 16-byte identity, a row group at a time."""
        parquet = self._parquet(version)
        for group in range(parquet.num_row_groups):
            yield parquet.read_row_group(group, columns=[HASH_COLUMN]).column(0).combine_chunks()

    def read_page(
        self, version: VersionInfo, offset: int, limit: int, search: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        return [record for _, record in self.page(version, offset, limit, search).rows]

    def page(self, version: VersionInfo, offset: int, limit: int, search: str | None = None) -> Page:
        """Rows `offset..offset+limit` (of the matches, with `search`), reading only the row groups
        that hold them: a page deep in a million rows costs one or two row groups, not a scan."""
        if offset < 0 or limit < 1:
            raise UserError("offset must be >= 0 and limit >= 1", param="offset")
        parquet = self._parquet(version)
        if search:
            return self._search_page(version, parquet, offset, limit, search)
        rows: builtins.list[tuple[int, dict[str, Any]]] = []
        start = 0
        for group in range(parquet.num_row_groups):
            size = parquet.metadata.row_group(group).num_rows
            if start + size > offset and len(rows) < limit:
                table = parquet.read_row_group(group, columns=list(FIELDS[version.kind]))
                skip = max(0, offset - start)
                part = table.slice(skip, limit - len(rows))
                rows.extend(enumerate(decode(version.kind, part), start=start + skip))
            start += size
            if len(rows) >= limit:
                break
        return Page(rows, offset, limit, version.rows, offset + len(rows) < version.rows)

    def _search_page(
        self, version: VersionInfo, parquet: pq.ParquetFile, offset: int, limit: int, search: str
    ) -> Page:
        rows: builtins.list[tuple[int, dict[str, Any]]] = []
        matched = 0
        start = 0
        columns = list(FIELDS[version.kind])
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group, columns=columns)
            hits = pc.indices_nonzero(search_mask(version.kind, table, search)).to_pylist()
            for index in hits:
                if matched >= offset and len(rows) < limit:
                    rows.append((start + index, decode(version.kind, table.slice(index, 1))[0]))
                elif len(rows) >= limit:
                    return Page(rows, offset, limit, None, True)
                matched += 1
            start += table.num_rows
        return Page(rows, offset, limit, None, False)

    def diff(self, project_id: str, a: str, b: str, examples: int = _EXAMPLES) -> DatasetDiff:
        """Rows added and removed from version `a` to version `b`, by record identity."""
        va, vb = self.resolve(project_id, a), self.resolve(project_id, b)
        hashes_a, hashes_b = self._all_hashes(va), self._all_hashes(vb)
        added = pc.indices_nonzero(pc.invert(pc.is_in(hashes_b, value_set=hashes_a))).to_pylist()
        removed = pc.indices_nonzero(pc.invert(pc.is_in(hashes_a, value_set=hashes_b))).to_pylist()
        return DatasetDiff(
            a=va,
            b=vb,
            added=len(added),
            removed=len(removed),
            unchanged=vb.rows - len(added),
            added_examples=self._rows_at(vb, added[:examples]),
            removed_examples=self._rows_at(va, removed[:examples]),
        )

    def _all_hashes(self, version: VersionInfo) -> pa.Array:
        """Every record's identity in one read (16 bytes a row: 16 MB per million rows), as variable-size
        binary, which Arrow's set lookup handles faster than fixed-size."""
        column = self._parquet(version).read(columns=[HASH_COLUMN]).column(0)
        return column.combine_chunks().cast(pa.binary())

    def _rows_at(self, version: VersionInfo, indices: builtins.list[int]) -> builtins.list[dict[str, Any]]:
        return [record for i in indices for record in self.read_page(version, i, 1)]

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _find(session: Session, project_id: str, name: str, *, lock: bool = False) -> Dataset | None:
        query = select(Dataset).where(Dataset.project_id == project_id, Dataset.name == name)
        if lock:
            query = query.with_for_update()  # PostgreSQL: versions of one dataset are numbered in turn
        return session.scalars(query).first()

    def _dataset(self, session: Session, project_id: str, name: str, *, lock: bool = False) -> Dataset:
        dataset = self._find(session, project_id, name, lock=lock)
        if dataset is None:
            known = session.scalars(
                select(Dataset.name).where(Dataset.project_id == project_id).order_by(Dataset.name)
            ).all()
            raise NotFound(
                f"no dataset {name!r} in this project; datasets: {_listing(list(known))}", param="name"
            )
        return dataset

    @staticmethod
    def _version_row(session: Session, dataset: Dataset, version: int) -> DatasetVersion | None:
        return session.scalars(
            select(DatasetVersion).where(
                DatasetVersion.dataset_id == dataset.id, DatasetVersion.version == version
            )
        ).first()

    @staticmethod
    def _version_by_id(
        session: Session, project_id: str, version_id: str
    ) -> tuple[Dataset, DatasetVersion] | None:
        row = session.execute(
            select(Dataset, DatasetVersion)
            .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
            .where(DatasetVersion.id == version_id, Dataset.project_id == project_id)
        ).first()
        return None if row is None else (row[0], row[1])

    @staticmethod
    def _dataset_info(dataset: Dataset, newest: DatasetVersion | None) -> DatasetInfo:
        return DatasetInfo(
            id=dataset.id,
            name=dataset.name,
            kind=RecordKind(dataset.kind),
            description=dataset.description,
            latest_version=dataset.latest_version,
            rows=newest.rows if newest is not None else 0,
            created_at=dataset.created_at,
            updated_at=dataset.updated_at,
        )


def _same(newest: DatasetVersion, row: DatasetVersion) -> bool:
    return (
        newest.content_hash == row.content_hash
        and newest.parent_id == row.parent_id
        and (newest.source or {}) == (row.source or {})
        and newest.recipe == row.recipe
        and newest.step == row.step
    )
