"""`client.datasets`: import files as dataset versions, list, show, read rows, diff, export.

    version = client.datasets.import_file("chats.jsonl", name="support").version
    client.datasets.head("support", n=3)
    client.datasets.export("support", "train.jsonl")           # {"messages": [...]} per line
    client.datasets.export("support@2", "train.parquet", format="parquet")

A reference is a dataset name (its newest version), `NAME@VERSION`, or `(name, version)`. Uploads are
bounded by the server's body limit (FMOPS_MAX_BODY_BYTES); import larger files on the server's
machine with `fmops data import`. Exports stream to the file, never into memory.
"""

from __future__ import annotations

import builtins
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import httpx

from fmops.sdk.errors import APIConnectionError, error_from_response
from fmops.sdk.models import _Model

if TYPE_CHECKING:
    from fmops.sdk.client import Client

_CHUNK = 1024 * 1024


class Dataset(_Model):
    id: str
    name: str
    kind: str
    description: str | None = None
    latest_version: int
    rows: int
    created_at: datetime
    updated_at: datetime


class DatasetVersion(_Model):
    """One immutable version: its records' kind and count, content hash and lineage."""

    id: str
    name: str
    version: int
    ref: str
    kind: str
    rows: int
    content_hash: str
    parent_id: str | None = None
    source: dict[str, Any]
    recipe: dict[str, Any] | None = None
    step: dict[str, Any] | None = None
    counts: dict[str, Any]
    report: dict[str, Any] | None = None
    size_bytes: int
    created_at: datetime


class ImportResult(_Model):
    version: DatasetVersion
    created: bool  # False: same records and source as the newest version, which is returned
    detection: str  # "format jsonl, shape sharegpt -> chat records"
    rows_read: int
    skipped: int
    problems: list[str]


class DatasetDiff(_Model):
    a: DatasetVersion
    b: DatasetVersion
    added: int
    removed: int
    unchanged: int
    added_examples: list[dict[str, Any]]
    removed_examples: list[dict[str, Any]]


def _split(ref: str | tuple[str, int | str]) -> tuple[str, str]:
    if isinstance(ref, tuple):
        return ref[0], str(ref[1])
    name, _, version = ref.partition("@")
    return name, version or "latest"


class Datasets:
    def __init__(self, client: Client) -> None:
        self._client = client

    def _version_path(self, ref: str | tuple[str, int | str]) -> str:
        name, version = _split(ref)
        return f"/api/datasets/{quote(name, safe='')}/versions/{quote(version, safe='')}"

    def list(self) -> builtins.list[Dataset]:
        return [Dataset.model_validate(d) for d in self._client.request("GET", "/api/datasets")]

    def versions(self, name: str) -> builtins.list[DatasetVersion]:
        """Every version of a dataset, newest first."""
        found = self._client.request("GET", f"/api/datasets/{quote(name, safe='')}/versions")
        return [DatasetVersion.model_validate(v) for v in found]

    def show(self, ref: str | tuple[str, int | str]) -> DatasetVersion:
        """A version: `"support"` (newest), `"support@2"` or `("support", 2)`."""
        return DatasetVersion.model_validate(self._client.request("GET", self._version_path(ref)))

    def lineage(self, ref: str | tuple[str, int | str]) -> builtins.list[DatasetVersion]:
        """The version, its parent, and so on to the root."""
        found = self._client.request("GET", self._version_path(ref) + "/lineage")
        return [DatasetVersion.model_validate(v) for v in found]

    def head(
        self,
        ref: str | tuple[str, int | str],
        n: int = 5,
        *,
        offset: int = 0,
        search: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Records `offset..offset+n` (of those holding `search`, when given)."""
        page = self._client.request(
            "GET", self._version_path(ref) + "/rows", params={"offset": offset, "limit": n, "search": search}
        )
        return [row["record"] for row in page["rows"]]

    def diff(self, ref: str | tuple[str, int | str], other: str | int, examples: int = 5) -> DatasetDiff:
        """Records added and removed from `other` (a version number, NAME@VERSION or id) to `ref`."""
        found = self._client.request(
            "GET", self._version_path(ref) + "/diff", params={"other": str(other), "examples": examples}
        )
        return DatasetDiff.model_validate(found)

    def import_file(
        self,
        path: str | os.PathLike[str],
        *,
        name: str,
        kind: Literal["chat", "completion", "preference", "eval"] | None = None,
        format: Literal["jsonl", "csv", "parquet"] | None = None,
        on_error: Literal["fail", "skip"] = "fail",
        description: str | None = None,
    ) -> ImportResult:
        """Upload a JSONL, CSV or Parquet file as the dataset's next version (streamed from disk)."""
        file = Path(path)
        form = {
            "name": name,
            "kind": kind,
            "format": format,
            "on_error": on_error,
            "description": description,
        }
        with file.open("rb") as handle:
            found = self._client._send(
                "POST",
                "/api/datasets/import",
                files={"file": (file.name, handle)},
                data={k: v for k, v in form.items() if v is not None},
            )
        return ImportResult.model_validate(found)

    def export(
        self,
        ref: str | tuple[str, int | str],
        path: str | os.PathLike[str],
        *,
        format: Literal["jsonl", "parquet"] = "jsonl",
    ) -> Path:
        """Write a version to `path`: JSONL as TRL and OpenAI's fine-tuning API read it, or Parquet."""
        out = Path(path)
        staged = out.with_name(f".{out.name}.partial")
        url = self._version_path(ref) + "/export"
        try:
            with self._client._http.stream("GET", url, params={"format": format}) as response:
                if response.is_error:
                    response.read()
                    raise error_from_response(response)
                with staged.open("wb") as handle:
                    for chunk in response.iter_bytes(_CHUNK):
                        handle.write(chunk)
            staged.replace(out)
        except httpx.TransportError as error:
            raise APIConnectionError(
                f"cannot reach fmops at {self._client.base_url} ({error})", request=error.request
            ) from error
        finally:
            staged.unlink(missing_ok=True)
        return out

    def delete(self, name: str) -> Dataset:
        return Dataset.model_validate(self._client.request("DELETE", f"/api/datasets/{quote(name, safe='')}"))
