"""Datasets: named, per-project collections of records with immutable, content-hashed versions.

A version's records live in one Parquet file in the artifact store (`path`); the row here is
written only after that file is complete, so a version is visible whole or not at all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fmops.store.models.base import Base
from fmops.store.types import JSONType, UTCDateTime, new_id, utcnow


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_datasets_project_name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))  # chat | completion | preference | eval: every version's
    description: Mapped[str | None] = mapped_column(Text)
    latest_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DatasetVersion(Base):
    """Immutable once written: a change (import, curation step, more traces) is a new version."""

    __tablename__ = "dataset_versions"
    __table_args__ = (
        UniqueConstraint("dataset_id", "version", name="uq_dataset_versions_dataset_version"),
        Index("ix_dataset_versions_parent_id", "parent_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    dataset_id: Mapped[str] = mapped_column(String(32), ForeignKey("datasets.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    rows: Mapped[int] = mapped_column(BigInteger)
    content_hash: Mapped[str] = mapped_column(String(64))  # sha256 over the records' hashes, in order
    # The version this one was derived from (any dataset of the project); no foreign key, so deleting
    # a dataset leaves its children's lineage readable as an id.
    parent_id: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # {"type": "import", ...}
    recipe: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # the curation recipe, if curated
    step: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # the one step that made this version
    counts: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # {"in": .., "out": .., ...}
    report: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # small: capped examples per reason
    path: Mapped[str] = mapped_column(String(500))  # artifact key of the Parquet file
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_by_key_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
