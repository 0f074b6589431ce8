"""A fine-tune's outputs in the artifact store, for machines other than the one that trained.

The job trains into `$FMOPS_HOME/finetunes/<job id>/` on its worker. When the artifact store is not
that machine's disk (`FMOPS_ARTIFACT_URL=s3://...`), `publish` uploads the adapter (its safetensors
and JSON, never a pickle) and the GGUF files to `finetunes/<project id>/<job id>/...` and the job
records their manifests under `artifacts.stored`. `local_output` gives an output's local path: the
run's own file where it still exists, else a copy from the store in `$FMOPS_HOME/cache/artifacts`,
keyed by content and fetched once per machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from fmops.artifacts import ArtifactStore, cache_dir, local_folder, upload_folder
from fmops.catalog.service import ModelSpec
from fmops.providers.base import STORED_OPTION
from fmops.providers.registry import get_provider_class
from fmops.settings import Settings

__all__ = ["adapter_files", "cache_dir", "local_output", "publish", "served_from_store"]

ADAPTER_SUFFIXES = (".json", ".safetensors", ".jinja", ".txt", ".model")
FILES = ("gguf_lora", "gguf")  # single-file outputs; "adapter" is a folder


def adapter_files(folder: Path) -> list[Path]:
    """The adapter's config, weights and tokenizer files (never the pickled training_args.bin)."""
    return [p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix in ADAPTER_SUFFIXES]


def publish(store: ArtifactStore, project_id: str, job_id: str, artifacts: dict[str, Any]) -> dict[str, Any]:
    """Upload the run's outputs named in `artifacts` unless the store is this disk; their manifests."""
    if store.is_local:
        return {}
    prefix = f"finetunes/{project_id}/{job_id}"
    adapter = Path(artifacts["adapter"])
    stored = {"adapter": {"prefix": f"{prefix}/adapter", "files": {}}}
    stored["adapter"]["files"] = upload_folder(store, f"{prefix}/adapter", adapter_files(adapter))
    for name in FILES:
        if name in artifacts:
            path = Path(artifacts[name])
            stored[name] = {
                "prefix": f"{prefix}/{name}",
                "files": upload_folder(store, f"{prefix}/{name}", [path]),
            }
    return stored


def served_from_store(spec: ModelSpec, artifacts: dict[str, Any]) -> ModelSpec:
    """The served model's spec, its files (the model, a path option) that are uploaded outputs named
    in `options.stored`: a gateway on another machine, whose engine loads in-process, fetches them
    from the store (`Provider.local_path`). A model served elsewhere (vLLM) is left as it is."""
    stored = artifacts.get("stored") or {}
    if not stored or not get_provider_class(spec.provider).capabilities.local:
        return spec
    by_path = {str(artifacts[name]): name for name in stored if name in artifacts}
    found: dict[str, Any] = {}
    for option, value in [("model", spec.model), *spec.options.items()]:
        name = by_path.get(value) if isinstance(value, str) else None
        if name is not None:
            found[option] = {**stored[name], "file": name != "adapter"}
    if not found:
        return spec
    text = orjson.dumps(found, option=orjson.OPT_SORT_KEYS).decode()
    return spec.model_copy(update={"options": {**spec.options, STORED_OPTION: text}})


def local_output(
    settings: Settings, store: ArtifactStore, artifacts: dict[str, Any], name: str
) -> Path | None:
    """Output `name` ("adapter": a folder; "gguf_lora", "gguf": a file) as a local path, or None."""
    if name not in artifacts:
        return None
    path = Path(artifacts[name])
    if path.exists():
        return path
    entry = (artifacts.get("stored") or {}).get(name)
    if entry is None:
        return path  # made before uploads, or on a local store: the caller names what is missing
    folder = local_folder(store, entry["prefix"], entry["files"], cache_dir(settings))
    return folder if name == "adapter" else folder / next(iter(entry["files"]))
