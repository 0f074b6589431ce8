"""Datasets: named, versioned, content-hashed collections of records stored as Parquet."""

from fmops.datasets.records import RecordKind, record_text, validate_record
from fmops.datasets.service import DatasetInfo, DatasetService, Page, VersionInfo

__all__ = [
    "DatasetInfo",
    "DatasetService",
    "Page",
    "RecordKind",
    "VersionInfo",
    "record_text",
    "validate_record",
]
