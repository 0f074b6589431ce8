"""Bases that cannot be trained are refused with the reason: a GGUF whose architecture transformers
cannot read, a hub id that is not downloaded, a catalog model without local weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from fmops.catalog.entry import ModelEntry
from fmops.errors import UserError
from fmops.finetune.base_model import base_from_entry, base_from_name, load_for_training, prepare_base


def write_gguf(path: Path, architecture: str) -> Path:
    """A small, valid GGUF file (header, metadata, one tensor) of the given architecture."""
    import gguf
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_block_count(1)
    writer.add_context_length(64)
    writer.add_embedding_length(8)
    writer.add_tensor("token_embd.weight", np.zeros((16, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_gguf_architecture_transformers_cannot_read_is_refused(tmp_path: Path) -> None:
    models = tmp_path / "models"
    write_gguf(models / "odd.gguf", "rwkv7")  # llama.cpp runs it; transformers has no GGUF reader for it
    source = base_from_name("odd.gguf", models)
    assert source.serving_gguf == (models / "odd.gguf").resolve()
    with pytest.raises(UserError, match="cannot be fine-tuned: transformers cannot load its GGUF") as caught:
        prepare_base(source, tmp_path / "bases")
    assert caught.value.param == "base"
    assert not (tmp_path / "bases").exists() or not any((tmp_path / "bases").iterdir())  # nothing half-made


def test_a_hub_id_that_is_not_downloaded(tmp_path: Path) -> None:
    source = base_from_name("nobody-here/no-such-model", tmp_path / "models")
    assert source.weights == "nobody-here/no-such-model"
    with pytest.raises(UserError, match="must already be downloaded") as caught:
        load_for_training(source.weights)
    assert caught.value.param == "base"


def test_a_remote_model_has_no_weights_to_train() -> None:
    entry = ModelEntry(alias="gpt", provider="openai", provider_model="gpt-4o-mini", id="m1")
    with pytest.raises(UserError, match="served by the openai provider and has no weights") as caught:
        base_from_entry(entry)
    assert caught.value.param == "base"
