"""How a fine-tune whose base is served by vLLM is served: the base's server with the adapter loaded
into it by name (vLLM multi-LoRA), never merged."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from fmops.catalog import Catalog
from fmops.catalog.entry import ModelEntry
from fmops.catalog.service import ModelSpec
from fmops.errors import NotFound

__all__ = ["vllm_adapter_spec", "vllm_base"]


def vllm_base(catalog: Catalog, project_id: str, base: str) -> ModelEntry | None:
    """The catalog entry of `base` when the vllm provider serves it, else None."""
    try:
        entry = catalog.get(project_id, base)
    except NotFound:
        return None
    return entry if entry.provider == "vllm" else None


def vllm_adapter_spec(alias: str, base: ModelEntry, adapter_dir: Path) -> ModelSpec:
    """The fine-tuned model: the base's server (attached or launched: the same options, so both share
    one supervised process) plus the PEFT adapter, called by the model's alias as its LoRA name."""
    options = {**base.options, "adapter": str(adapter_dir), "lora_name": alias}
    return ModelSpec(
        alias=alias,
        provider="vllm",
        model=base.provider_model,
        base_url=None if base.options.get("launch") else base.base_url,
        api_key=SecretStr(base.api_key) if base.api_key else None,
        context_window=base.context_window,
        input_price=base.input_price,
        output_price=base.output_price,
        capabilities=dict(base.capabilities),
        timeout_seconds=base.timeout_seconds,
        max_retries=base.max_retries,
        options=options,
    )
