"""The real SmolLM2-135M, briefly fine-tuned by the job, served by llama.cpp from the merged GGUF and
over the base with the GGUF LoRA: the same greedy answers as transformers + PEFT; and the exports
(adapter, merged folder, merged GGUF, GGUF LoRA) agree too."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from finetune.tiny import chat_records
from fmops.artifacts import ArtifactStore
from fmops.auth import AuthService
from fmops.catalog import Catalog
from fmops.datasets import DatasetService
from fmops.finetune.service import FinetuneService
from fmops.jobs import JobService, JobStatus
from fmops.jobs.worker import Worker
from fmops.providers.base import ProviderConfig
from fmops.providers.registry import get_provider_class
from fmops.secrets import SecretBox
from fmops.settings import load_settings
from fmops.store import Store
from support.databases import migrated_sqlite_url

PROMPTS = ["refund #12", "crash #3", "password #44", "tracking #9", "hello #1"]
CONFIG = {
    "max_steps": 12,
    "logging_steps": 4,
    "save_steps": 100,
    "learning_rate": 2e-3,
    "num_threads": 1,  # one thread: two spin on each other when the machine is loaded
    "lora": {"r": 8, "lora_alpha": 16},
}


def peft_answers(base: str, adapter: Path) -> tuple[list[str], object]:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), str(adapter)
    )
    return [greedy(model, tokenizer, p) for p in PROMPTS], tokenizer


def greedy(model: object, tokenizer: object, prompt: str) -> str:
    import torch

    x = tokenizer.apply_chat_template(  # type: ignore[attr-defined]
        [{"role": "user", "content": prompt}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**x, max_new_tokens=16, do_sample=False)  # type: ignore[attr-defined]
    return str(tokenizer.decode(out[0][x["input_ids"].shape[1] :], skip_special_tokens=True)).strip()  # type: ignore[attr-defined]


@pytest.mark.slow
@pytest.mark.timeout(900)  # ~1 min on an idle 2-core machine; several on a loaded one
def test_gguf_served_finetune_answers_as_transformers_and_peft(tmp_path: Path) -> None:
    store = Store(migrated_sqlite_url(tmp_path))
    settings = load_settings(
        {"home": tmp_path / "home", "database_url": store.url, "job_heartbeat_seconds": 0.5}
    )
    project = AuthService(store).create_project("ft").id
    DatasetService(store, ArtifactStore.from_settings(settings)).create_version(
        project_id=project, name="tickets", kind="chat", batches=[chat_records(48)]
    )
    jobs = JobService(store)
    job_id = jobs.submit("finetune", {"dataset": "tickets", "config": CONFIG}, project_id=project).id
    worker = Worker(jobs, settings, threading.Event())
    claimed = jobs.claim(worker.worker_id, ["finetune"])
    assert claimed is not None
    worker.execute(claimed)
    job = jobs.get(job_id, None)
    assert job.status == JobStatus.succeeded, job.error
    assert job.result is not None
    alias = job.result["model"]
    assert alias == f"smollm2-135m-instruct-ft-{job_id[-8:]}"

    catalog = Catalog(store, settings, SecretBox.from_settings(settings))
    entry = catalog.get(project, alias)
    artifacts = job.result["artifacts"]
    assert entry.provider == "llamacpp"
    assert entry.provider_model == artifacts["gguf"]  # the merged copy of the base: the base's speed
    assert "lora_path" not in entry.options
    merged_gguf = get_provider_class("llamacpp")(entry.provider_config())
    over_base = get_provider_class("llamacpp")(  # `serve_as: lora`: the GGUF LoRA over the shared base
        ProviderConfig(model=artifacts["base_gguf"], options={"lora_path": artifacts["gguf_lora"]})
    )

    async def ask(provider: object, prompt: str) -> str:
        body = {
            "model": alias,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0,
            "max_tokens": 16,
        }
        reply = await provider.chat(body, timeout=120)  # type: ignore[attr-defined]
        return str(reply["choices"][0]["message"]["content"]).strip()

    served = [asyncio.run(ask(merged_gguf, p)) for p in PROMPTS]
    with_lora = [asyncio.run(ask(over_base, p)) for p in PROMPTS]
    bases = list((tmp_path / "home" / "finetune" / "bases").iterdir())
    assert len(bases) == 1
    base = str(bases[0])
    expected, tokenizer = peft_answers(base, Path(artifacts["adapter"]))
    assert served == expected
    assert with_lora == expected
    assert all(answer.startswith('{"category"') for answer in served)  # it learnt the format

    finetunes = FinetuneService(
        store, settings, jobs, catalog, DatasetService(store, ArtifactStore.from_settings(settings))
    )
    adapter = finetunes.export(project, job_id, "adapter", tmp_path / "export" / "adapter")
    assert (adapter / "adapter_model.safetensors").is_file()
    assert not (adapter / "training_args.bin").exists()  # pickles are never exported
    gguf_file = finetunes.export(project, job_id, "gguf", tmp_path / "export" / "model.gguf")
    assert gguf_file.read_bytes() == Path(artifacts["gguf"]).read_bytes()
    lora_file = finetunes.export(project, job_id, "gguf-lora", tmp_path / "export" / "lora.gguf")
    assert lora_file.stat().st_size == Path(artifacts["gguf_lora"]).stat().st_size
    merged = finetunes.export(project, job_id, "merged", tmp_path / "export" / "merged")
    from transformers import AutoModelForCausalLM

    merged_model = AutoModelForCausalLM.from_pretrained(str(merged))
    assert [greedy(merged_model, tokenizer, p) for p in PROMPTS] == expected
    store.dispose()
