"""The "New fine-tune" form's parts: the dataset versions it can train on, the base models it offers,
the effective defaults as YAML, and the submitted YAML turned back into the user's own settings.

The YAML text area starts with every default the job would use (`fmops.finetune.config`); what comes
back is compared with those defaults and only the values the user changed (or added) are sent, as
`fmops finetune run --config` does, so the job's lineage shows what was chosen and a setting the job
decides itself (bf16 per device) is not pinned by a copy of its CPU default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fmops.catalog import Catalog
from fmops.datasets import DatasetService
from fmops.datasets.service import VersionInfo
from fmops.errors import UserError
from fmops.finetune.config import FinetuneConfig, Method
from fmops.finetune.data import KIND_FOR_METHOD

__all__ = [
    "METHOD_FOR_KIND",
    "DatasetChoice",
    "base_choices",
    "dataset_choices",
    "defaults_yaml",
    "settings_from_yaml",
]

METHOD_FOR_KIND = {kind: method for method, kind in KIND_FOR_METHOD.items()}
VERSIONS_SHOWN = 20  # newest versions of each dataset in the picker (older ones: type name@N in the API)
TRAINABLE_PROVIDERS = ("llamacpp", "transformers")  # catalog models with weights to train
LOCAL_BASES_SHOWN = 50
DEVICE_CHOSEN = ("bf16",)  # defaults the job sets per device: not shown, so a copy cannot pin them
MAX_CONFIG = 20_000  # characters of YAML


@dataclass(frozen=True, slots=True)
class DatasetChoice:
    name: str
    kind: str
    method: Method
    versions: list[VersionInfo]  # newest first


def dataset_choices(service: DatasetService, project_id: str) -> list[DatasetChoice]:
    """Datasets whose kind a method trains on (chat for SFT, preference for DPO), with their versions."""
    found = []
    for dataset in service.list_datasets(project_id):
        method = METHOD_FOR_KIND.get(str(dataset.kind))
        if method is None:
            continue
        versions = service.list_versions(project_id, dataset.name)[:VERSIONS_SHOWN]
        if versions:
            found.append(DatasetChoice(dataset.name, str(dataset.kind), method, versions))
    return found


def base_choices(catalog: Catalog, project_id: str, models_root: Path) -> list[str]:
    """Catalog models served from local weights, then folders and .gguf files under $FMOPS_HOME/models."""
    names = sorted(
        alias for alias, entry in catalog.models(project_id).items() if entry.provider in TRAINABLE_PROVIDERS
    )
    if models_root.is_dir():
        local = sorted(
            p.name
            for p in models_root.iterdir()
            if (p.is_dir() and (p / "config.json").is_file()) or p.suffix == ".gguf"
        )
        names += [n for n in local[:LOCAL_BASES_SHOWN] if n not in names]
    return names


def _defaults(method: Method) -> dict[str, Any]:
    config = FinetuneConfig(method=method)
    training = {k: v for k, v in config.training_values().items() if k not in DEVICE_CHOSEN}
    return {**training, "lora": config.lora_values()}


def defaults_yaml(method: Method, chosen: Mapping[str, Any] | None = None) -> str:
    """Every default of `method`, as the text area shows it (TRL's names; PEFT's under `lora:`), with
    `chosen` (an earlier job's settings) in place of the defaults it changed."""
    values = _defaults(method)
    for key, value in (chosen or {}).items():
        if key == "lora" and isinstance(value, Mapping):
            values["lora"] = {**values["lora"], **value}
        else:
            values[key] = value
    trl = "DPOConfig" if method == Method.dpo else "SFTConfig"
    head = (
        f"# The defaults of {method.upper()} fine-tuning: TRL {trl} fields, PEFT LoraConfig under lora:.\n"
        f"# Change any value or add any other {trl} field. Values left at their default are not recorded.\n"
        "# bf16 is chosen per device when the job starts; num_threads: N sets torch's CPU threads.\n"
    )
    return head + yaml.safe_dump(values, sort_keys=False, default_flow_style=False)


def settings_from_yaml(text: str, method: Method) -> dict[str, Any]:
    """The user's settings: the YAML's values that differ from `method`'s defaults (a 400 naming what to
    fix for YAML that does not parse or is not a mapping; unknown fields are left to the service)."""
    if len(text) > MAX_CONFIG:
        raise UserError(f"config is too long (at most {MAX_CONFIG:,} characters)", param="config")
    try:
        # An alias repeats a node by reference: nested ones would expand exponentially once the job's
        # params are written out as JSON. Settings are flat values: write them out instead.
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=yaml.SafeLoader)):
            raise UserError("config uses a YAML alias (*name): write the value out instead", param="config")
        raw = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or "it does not parse"
        raise UserError(f"config is not valid YAML{line}: {problem}", param="config") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UserError("config must be a mapping of settings (name: value on each line)", param="config")
    raw = dict(raw)
    chosen = raw.pop("method", str(method))
    if str(chosen) != str(method):
        raise UserError(
            f"config.method is {chosen!r} but the form's method is {method}: choose the method above",
            param="config.method",
        )
    defaults = _defaults(method)
    lora = raw.pop("lora", None)
    out = {
        k: v
        for k, v in raw.items()
        if k not in defaults or defaults[k] != v or type(defaults[k]) is not type(v)
    }
    if isinstance(lora, dict):
        lora_defaults = defaults["lora"]
        changed = {
            k: v
            for k, v in lora.items()
            if k not in lora_defaults or lora_defaults[k] != v or type(lora_defaults[k]) is not type(v)
        }
        if changed:
            out["lora"] = changed
    elif lora is not None:
        out["lora"] = lora  # not a mapping: the service says so, naming config.lora
    return out
