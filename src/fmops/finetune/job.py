"""The `finetune` job: a dataset version in, a served catalog model out.

Steps: read the dataset version (train split: records whose `metadata.split` is "train" or unset;
"validation" gives the validation loss), prepare the base weights, train with TRL + PEFT (one JSON
log line per logging step, for the loss curve), convert the adapter to a GGUF LoRA, merge it into a
copy of the base GGUF (unless `serve_as: lora`), and register `<base>-ft-<short id>` (or the chosen
name) served by llama.cpp, with its lineage in the `finetunes` table. Checkpoints live in
`$FMOPS_HOME/finetunes/<job id>/`; a retried attempt (the worker was killed, the server restarted)
continues from the newest one. A cancelled or failed job registers nothing. With `num_processes: N`
in the config the training runs in N processes under torchrun (fmops.finetune.launch); with
`FMOPS_EXECUTOR=ray`, in N (default 1) Ray Train workers on the cluster, the same trainer in each.
Either way this job still registers the one model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from fmops.artifacts import ArtifactStore
from fmops.catalog import Catalog
from fmops.catalog.builtin import DEFAULT_CHAT_MODEL
from fmops.catalog.service import ModelSpec
from fmops.datasets import DatasetService
from fmops.errors import Conflict, NotFound
from fmops.executors import make_executor
from fmops.finetune.base_model import BaseSource, base_from_entry, base_from_name, prepare_base
from fmops.finetune.config import FinetuneConfig, Method
from fmops.finetune.data import split_records
from fmops.finetune.events import ProgressEvent, TrainingInterrupted
from fmops.finetune.serving import vllm_adapter_spec, vllm_base
from fmops.finetune.stored import publish, served_from_store
from fmops.jobs import JobContext, RetryableJobError, job_kind
from fmops.secrets import SecretBox
from fmops.settings import Settings
from fmops.store import Store
from fmops.store.models import Finetune

__all__ = ["KIND", "FinetuneParams", "bases_dir", "model_alias", "resolve_base", "run_dir"]

log = logging.getLogger(__name__)
KIND = "finetune"
Alias = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/\-]*$")
]
Id = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")]


class FinetuneParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base: str = Field(
        DEFAULT_CHAT_MODEL, min_length=1, max_length=500, description="Catalog alias, hub id or folder"
    )
    dataset: str = Field(min_length=1, max_length=200, description="name, name@version or a version id")
    method: Method = Method.sft
    config: dict[str, Any] = Field(
        default_factory=dict, description="TRL SFTConfig/DPOConfig fields; lora: PEFT"
    )
    name: Alias | None = Field(None, description="Alias of the resulting model; default <base>-ft-<short id>")
    resume_from: Id | None = Field(None, description="Continue from the checkpoints of this earlier job")


def run_dir(settings: Settings, job_id: str) -> Path:
    return settings.home / "finetunes" / job_id


def bases_dir(settings: Settings) -> Path:
    """Base models saved once as fp32 safetensors for training (and merged exports)."""
    return settings.home / "finetune" / "bases"


def model_alias(params: FinetuneParams, job_id: str) -> str:
    if params.name:
        return params.name
    stem = params.base.rstrip("/").split("/")[-1] or "model"
    return f"{stem[:80]}-ft-{job_id[-8:]}"


def resolve_base(catalog: Catalog, project_id: str, base: str) -> BaseSource:
    """A catalog alias first, then a file or folder under $FMOPS_HOME/models, or a hub id."""
    try:
        return base_from_entry(catalog.get(project_id, base))
    except NotFound:
        return base_from_name(base, catalog.settings.home / "models")


def _event_logger(ctx: JobContext) -> Any:
    def on_event(event: ProgressEvent) -> None:
        ctx.log(json.dumps({"event": event.kind, **event.to_dict()}))
        if event.kind == "train" and not ctx.stopping:
            parts = [f"step {event.step}/{event.max_steps}", f"loss {event.loss:.4f}"]
            if event.tokens_per_second:
                parts.append(f"{event.tokens_per_second:.0f} tok/s")
            if event.eta_seconds is not None:
                parts.append(f"ETA {event.eta_seconds:.0f} s")
            ctx.progress(0.05 + 0.85 * event.fraction, ", ".join(parts))

    return on_event


@job_kind(
    KIND,
    params=FinetuneParams,
    description="Fine-tune a LoRA adapter (SFT or DPO) on a dataset version and register the served model",
)
def run_finetune(ctx: JobContext, params: FinetuneParams) -> dict[str, Any]:
    settings = ctx.settings
    store = Store(settings.database_url)
    try:
        return _run(ctx, params, store, settings)
    finally:
        store.dispose()


def _run(ctx: JobContext, params: FinetuneParams, store: Store, settings: Settings) -> dict[str, Any]:
    from fmops.finetune.gguf_lora import adapter_to_gguf
    from fmops.finetune.gguf_merge import merge_into_gguf
    from fmops.finetune.trainer import train

    config = FinetuneConfig.from_dict(params.config, params.method)
    catalog = Catalog(store, settings, SecretBox.from_settings(settings))
    alias = model_alias(params, ctx.job_id)
    if alias in catalog.models(ctx.project_id):
        raise Conflict(f"model {alias!r} already exists; choose another name", param="name")
    datasets = DatasetService(store, ArtifactStore.from_settings(settings))
    version = datasets.resolve(ctx.project_id, params.dataset)
    source = resolve_base(catalog, ctx.project_id, params.base)
    splits = split_records(config.method, str(version.kind), datasets.iter_records(version))
    folder = run_dir(settings, params.resume_from or ctx.job_id)
    ctx.log(
        json.dumps(
            {
                "event": "start",
                "base": params.base,
                "dataset": version.ref,
                "dataset_version_id": version.id,
                "train_records": len(splits.train),
                "validation_records": len(splits.validation),
                "skipped_records": splits.skipped,
                "config": config.to_dict(),
            }
        )
    )
    ctx.progress(0.01, "preparing the base model")
    weights = prepare_base(source, bases_dir(settings))
    ctx.check()

    def on_checkpoint(path: Path, step: int) -> None:
        ctx.checkpoint({"checkpoint": str(path), "step": step, "run_dir": str(folder)})

    run: dict[str, Any] = {
        "base_weights": weights,
        "config": config,
        "splits": splits,
        "output_dir": folder,
        "resume": True,
        "on_event": _event_logger(ctx),
        "on_checkpoint": on_checkpoint,
        "stop_requested": lambda: ctx.stopping,
        "on_note": lambda text: ctx.log(text, "warning"),
    }
    executor = make_executor(settings)
    try:
        if executor.remote:  # Ray Train's workers on the cluster; rank 0 reports, this job registers
            from fmops.finetune.launch import train_on_executor

            workers, gpu = config.num_processes, settings.ray_train_gpu
            result = train_on_executor(executor, workers=workers, use_gpu=gpu, **run)
        elif config.num_processes > 1:  # torchrun on this host
            from fmops.finetune.launch import train_in_processes

            result = train_in_processes(processes=config.num_processes, **run)
        else:
            result = train(**run)
    except TrainingInterrupted as exc:
        ctx.log(str(exc))
        ctx.check()  # raises JobCancelled: the worker records a cancel or queues the job again
        raise RetryableJobError(str(exc)) from None
    if result.resumed_from:
        ctx.log(f"resumed from {result.resumed_from}")
    ctx.progress(0.92, "converting the adapter for llama.cpp")
    artifacts: dict[str, Any] = {"run_dir": str(folder), "adapter": str(result.adapter_dir)}
    serving = source.serving_gguf
    on_vllm = vllm_base(catalog, ctx.project_id, params.base)
    if on_vllm is not None:  # the base's vLLM server loads the adapter by name (multi-LoRA), unmerged
        spec = vllm_adapter_spec(alias, on_vllm, result.adapter_dir)
    elif serving is not None:
        lora = adapter_to_gguf(result.adapter_dir, serving, folder / "adapter.gguf")
        artifacts |= {"gguf_lora": str(lora), "base_gguf": str(serving)}
        options: dict[str, Any] = {"n_ctx": 2048}
        if config.serve_as == "merged":  # the base's decode speed; see gguf_merge
            ctx.progress(0.95, "merging the adapter into a copy of the base GGUF")
            merged = merge_into_gguf(result.adapter_dir, serving, folder / "model.gguf")
            artifacts["gguf"] = str(merged)
            served_file = merged
        else:
            options["lora_path"] = str(lora)
            served_file = serving
        spec = ModelSpec(
            alias=alias,
            provider="llamacpp",
            model=str(served_file),
            capabilities={"streaming": True, "json_schema": True, "tools": False},
            options=options,
            timeout_seconds=300.0,
            max_retries=0,
        )
    else:  # no GGUF base: served by transformers with the adapter merged in (slower)
        spec = ModelSpec(
            alias=alias,
            provider="transformers",
            model=weights,
            capabilities={"streaming": True, "json_schema": False, "tools": False},
            options={"adapter": str(result.adapter_dir)},
            timeout_seconds=300.0,
            max_retries=0,
        )
    if not datasets.artifacts.is_local:  # other machines serve and export it from the store
        ctx.progress(0.97, "uploading the outputs to the artifact store")
        artifacts["stored"] = publish(datasets.artifacts, ctx.project_id, ctx.job_id, artifacts)
        spec = served_from_store(spec, artifacts)
    ctx.check()  # a job cancelled by now registers nothing
    entry = catalog.add(ctx.project_id, spec, trusted=True)
    try:
        with store.write() as session:
            session.add(
                Finetune(
                    job_id=ctx.job_id,
                    project_id=ctx.project_id,
                    model_id=entry.id,
                    model_alias=alias,
                    base=params.base,
                    method=str(config.method),
                    dataset_version_id=version.id,
                    dataset_ref=version.ref,
                    config=config.to_dict(),
                    metrics=result.metrics,
                    artifacts=artifacts,
                )
            )
    except Exception:
        catalog.remove(ctx.project_id, alias)  # no model without its lineage
        raise
    ctx.log(json.dumps({"event": "done", "model": alias, **result.metrics}))
    return {
        "model": alias,
        "base": params.base,
        "dataset": version.ref,
        "dataset_version_id": version.id,
        "metrics": result.metrics,
        "artifacts": artifacts,
    }
