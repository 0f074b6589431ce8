"""Fine-tuning: LoRA SFT and DPO with TRL + PEFT as tracked, resumable jobs that produce served models.

config.py (TRL/PEFT settings and defaults) · base_model.py (base weights, the GGUF -> fp32 copy) ·
data.py (records -> TRL rows, splits) · events.py + progress.py (Trainer callback -> plain events) ·
trainer.py (one run: train, checkpoint, resume) · gguf_lora.py (adapter -> GGUF LoRA for llama.cpp) ·
export.py (merged model folder) · job.py (the `finetune` job kind). Heavy libraries (torch,
transformers, TRL) load only when a run starts.
"""

from fmops.finetune.config import FinetuneConfig, Method, load_config

__all__ = ["FinetuneConfig", "Method", "load_config"]
