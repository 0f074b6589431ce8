"""Folders of files in the artifact store, and local copies of them keyed by their content.

Engines (transformers, PEFT, llama.cpp) open local files only. A run's outputs go up with
`upload_folder`, which returns a manifest (file name → SHA-256); `local_folder` brings a manifest's
files down into `<cache>/<digest of the manifest>/`, checking each file's hash, and reuses that
folder afterwards: the same content is fetched once per machine, and a changed file is a new folder.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fmops.artifacts.store import ArtifactStore, check_key
from fmops.settings import Settings

__all__ = ["Manifest", "cache_dir", "local_folder", "manifest_digest", "stored_copy", "upload_folder"]

Manifest = dict[str, str]  # file name -> SHA-256 of its bytes


def manifest_digest(manifest: Manifest) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def upload_folder(store: ArtifactStore, prefix: str, files: Iterable[Path]) -> Manifest:
    """Upload `files` (flat: their names become keys under `prefix`); the manifest of what went up."""
    manifest: Manifest = {}
    for path in sorted(files, key=lambda p: p.name):
        manifest[path.name] = store.put(path, f"{check_key(prefix)}/{check_key(path.name)}")
    return manifest


def local_folder(store: ArtifactStore, prefix: str, manifest: Manifest, cache: Path) -> Path:
    """A local folder holding the manifest's files from `prefix`, downloaded once and verified."""
    folder = cache / manifest_digest(manifest)
    if folder.is_dir():
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    staging = cache / f".{folder.name}.{secrets.token_hex(4)}.partial"
    staging.mkdir()
    try:
        for name, expected in manifest.items():
            got = store.get(f"{check_key(prefix)}/{check_key(name)}", staging / name)
            if got != expected:
                raise ValueError(f"artifact {prefix}/{name} changed: SHA-256 {got}, expected {expected}")
        try:
            staging.rename(folder)  # atomic: a reader sees the whole folder or none
        except OSError:
            if not folder.is_dir():  # not another process having finished the same copy first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def cache_dir(settings: Settings) -> Path:
    """Where this machine keeps its copies of stored artifacts."""
    return settings.home / "cache" / "artifacts"


def stored_copy(store: ArtifactStore, entry: Mapping[str, Any], cache: Path) -> Path:
    """The local copy of a stored output (`{"prefix", "files": manifest, "file": bool}`): its folder,
    or, for a single-file output (`file` true), the file in it."""
    folder = local_folder(store, str(entry["prefix"]), dict(entry["files"]), cache)
    return folder / next(iter(entry["files"])) if entry.get("file") else folder
