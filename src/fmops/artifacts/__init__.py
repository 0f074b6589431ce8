"""The artifact store: files (dataset versions, adapters, reports) under one fsspec URL.

`FMOPS_ARTIFACT_URL` names it (`s3://bucket/fmops`, `gs://...`, `file:///srv/fmops`); unset, it is
the folder `artifacts/` under `FMOPS_HOME`. Keys are relative paths that fmops makes
(`datasets/<project id>/<version id>.parquet`), never user input.
"""

from fmops.artifacts.cache import Manifest, cache_dir, local_folder, stored_copy, upload_folder
from fmops.artifacts.store import ArtifactStore, check_key

__all__ = [
    "ArtifactStore",
    "Manifest",
    "cache_dir",
    "check_key",
    "local_folder",
    "stored_copy",
    "upload_folder",
]
