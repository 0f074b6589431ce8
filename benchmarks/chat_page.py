"""The consumers' chat with 1,000 conversations stored for the user: first paint, and how soon a token the
model sends is on the screen.

Starts a real `fmops up` (SQLite, no job workers) and a timestamping mock upstream (in this process:
an OpenAI-compatible stream that notes the wall-clock time, time.time(), at which it wrote each chunk).
A consumer gets --conversations conversations made through the chat's own routes, the newest
--answered of them with a message and its answer (the list reads the conversations table only).
Then, in headless Chromium (Playwright, 1280x800), signed in as that user:

  - first paint and first contentful paint of `/` (a new chat) and `/?c=<id>` (an open conversation),
    from the browser's performance entries, median of --loads loads after a warm-up load, and the
    server's response time of the same pages (httpx, whole body);
  - token delay: --messages messages sent through the page; a MutationObserver in the page notes when
    each token (`t0`, `t1`, ...) first appears in the answer's text, as performance.timeOrigin +
    performance.now() (the same wall clock, in ms). Delay = shown - written by the mock upstream: what
    the gateway, the chat route and the page add together (the gateway sends a token after the mock
    writes it, so the delay from the gateway is at most this).

Targets (issue 18): first paint <= 200 ms, first token shown <= 50 ms after it was sent.

    .venv/bin/python benchmarks/chat_page.py [--conversations 1000] [--loads 7] [--messages 5]
        [--tokens 20] [--gap-ms 60]

Raw figures: benchmarks/results/chat_page.json (with the commit and the machine's load).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
from _harness import BIN, ROOT, free_port, load, process, save_result, wait_http
from aiohttp import web

sys.path.insert(0, str(ROOT / "tests"))
from support.threaded_app import serve_in_thread  # type: ignore[import-not-found]

CHROMIUM = os.environ.get("FMOPS_TEST_CHROMIUM", "/usr/bin/chromium")
PAINT_BUDGET_MS = 200.0
TOKEN_BUDGET_MS = 50.0


class TimedUpstream:
    """An OpenAI-compatible mock: streams `tokens` words `t0 t1 ...`, `gap` seconds apart, and notes
    when each was written (time.time(), seconds). A non-streamed call gets a short reply."""

    def __init__(self, tokens: int, gap: float) -> None:
        self.tokens, self.gap = tokens, gap
        self.sent: list[list[float]] = []  # per streamed call: when each token was written

    def app(self) -> web.Application:
        async def chat(request: web.Request) -> web.StreamResponse:
            body = orjson.loads(await request.read())
            model = str(body.get("model", "m"))
            if not body.get("stream"):
                message = {"role": "assistant", "content": "seeded answer"}
                choice = {"index": 0, "message": message, "finish_reason": "stop"}
                usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
                return web.json_response(
                    {
                        "id": "x",
                        "object": "chat.completion",
                        "model": model,
                        "choices": [choice],
                        "usage": usage,
                    }
                )
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            times: list[float] = []
            self.sent.append(times)
            for i in range(self.tokens):
                await asyncio.sleep(self.gap)
                delta = {"content": f"t{i}" if i == 0 else f" t{i}"}
                chunk = {
                    "id": "x",
                    "object": "chat.completion.chunk",
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                }
                await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
                times.append(time.time())
            end = {
                "id": "x",
                "object": "chat.completion.chunk",
                "model": model,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
            await resp.write(b"data: " + orjson.dumps(end) + b"\n\ndata: [DONE]\n\n")
            return resp

        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        return app


def signed_in(url: str, key: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=url, timeout=60, follow_redirects=False)
    assert client.post("/login", data={"api_key": key}).status_code == 303
    found = re.search(r'data-csrf="([^"]+)"', client.get("/").text)
    assert found
    return client, found.group(1)


def seed(url: str, key: str, count: int, answered: int, workers: int = 4) -> list[str]:
    """`count` conversations of the user, newest last; the newest `answered` of them with a question and
    its (short, streamed) answer, the others empty ("New conversation")."""

    def some(numbers: range) -> list[str]:
        client, token = signed_in(url, key)
        headers = {"x-csrf-token": token, "accept": "application/json"}
        made_here = []
        try:
            for n in numbers:
                made = client.post("/chat/conversations", json={"endpoint": "timed"}, headers=headers)
                made.raise_for_status()
                conversation = str(made.json()["id"])
                made_here.append(conversation)
                if n < count - answered:
                    continue  # the list reads the conversations table only: most stay without messages
                sent = client.post(
                    f"/chat/conversations/{conversation}/messages",
                    json={"content": f"Question number {n}: what about topic {n % 37}?"},
                    headers=headers,
                )
                assert '"type":"done"' in sent.text, sent.text[-500:]
        finally:
            client.close()
        return made_here

    began = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        parts = list(pool.map(some, [range(w, count - answered, workers) for w in range(workers)]))
    made = [c for part in parts for c in part]
    made += some(range(count - answered, count))  # the newest, in order
    print(f"seeded {count:,} conversations in {time.perf_counter() - began:.0f} s")
    return made


def server_ms(url: str, key: str, path: str, loads: int) -> float:
    client, _ = signed_in(url, key)
    try:
        client.get(path)
        times = []
        for _ in range(loads):
            began = time.perf_counter()
            assert client.get(path).status_code == 200
            times.append((time.perf_counter() - began) * 1000)
    finally:
        client.close()
    return statistics.median(times)


PAINTS = """() => new Promise(done => {
    const read = () => Object.fromEntries(
        performance.getEntriesByType('paint').map(e => [e.name, e.startTime]));
    if (read()['first-contentful-paint'] !== undefined) return done(read());
    new PerformanceObserver(() => done(read())).observe({type: 'paint', buffered: true});
    setTimeout(() => done(read()), 3000);
})"""

WATCH = """() => {
    window.__shown = {};
    new MutationObserver(() => {
        const body = document.querySelector('article.msg.assistant.streaming .body');
        if (!body) return;
        const now = performance.timeOrigin + performance.now();
        for (const word of body.textContent.split(/\\s+/)) {
            if (/^t\\d+$/.test(word) && !(word in window.__shown)) window.__shown[word] = now;
        }
    }).observe(document.getElementById('messages'), {childList: true, subtree: true, characterData: true});
}"""


def browser_figures(
    url: str, key: str, open_id: str, loads: int, messages: int, upstream: TimedUpstream
) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    paints: dict[str, dict[str, float]] = {}
    delays: list[list[float]] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        page.set_default_timeout(60_000)
        page.goto(f"{url}/login")
        page.fill("#key-form input[name=api_key]", key)
        page.click("#key-form button[type=submit]")
        page.wait_for_load_state("domcontentloaded")
        for name, path in (("new chat", "/"), ("open conversation", f"/?c={open_id}")):
            found: dict[str, list[float]] = {"first-paint": [], "first-contentful-paint": []}
            for n in range(loads + 1):
                page.goto(url + path, wait_until="load")
                entries = page.evaluate(PAINTS)
                if n:  # the first load warms the asset cache
                    for entry in found:
                        if entry in entries:
                            found[entry].append(float(entries[entry]))
            paints[name] = {entry: statistics.median(v) for entry, v in found.items() if v}
            paints[name]["items listed"] = page.locator("[data-testid=conversation]").count()

        page.goto(f"{url}/")
        page.select_option("[data-testid=endpoint-picker]", "timed")
        for n in range(messages):
            page.evaluate(WATCH)
            before = len(upstream.sent)
            page.fill("[data-testid=message-input]", f"Count for me, round {n}")
            page.keyboard.press("Enter")
            page.wait_for_function(
                "n => document.querySelectorAll('article.msg.assistant:not(.streaming)').length === n",
                arg=n + 1,
            )
            shown = page.evaluate("window.__shown")
            sent = upstream.sent[before]
            delays.append([shown[f"t{i}"] - sent[i] * 1000 for i in range(len(sent)) if f"t{i}" in shown])
        browser.close()
    return {"paints": paints, "delays": delays}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--answered", type=int, default=40, help="conversations with a message")
    parser.add_argument("--loads", type=int, default=7)
    parser.add_argument("--messages", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--gap-ms", type=float, default=60)
    args = parser.parse_args()
    load_before = load()
    upstream = TimedUpstream(2, 0.0)  # seeding: short answers at once
    with (
        tempfile.TemporaryDirectory(prefix="fmops-chat-bench-") as tmp,
        serve_in_thread(upstream.app()) as mport,
    ):
        home = Path(tmp)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FMOPS_")}
        env |= {
            "FMOPS_HOME": str(home),
            "FMOPS_PORT": str(port),
            "FMOPS_WORKERS": "0",
            "FMOPS_UPSTREAM_ALLOW_PRIVATE": "true",
        }
        with process([str(BIN / "fmops"), "up"], env=env, log=home / "server.log"):
            wait_http(url + "/readyz")
            admin = {"Authorization": f"Bearer {(home / 'admin.key').read_text().strip()}"}
            with httpx.Client(base_url=url, headers=admin, timeout=30) as api:
                model = {
                    "alias": "timed",
                    "provider": "openai",
                    "model": "timed",
                    "base_url": f"http://127.0.0.1:{mport}/v1",
                }
                api.post("/api/models", json=model).raise_for_status()
                api.post("/api/users", json={"name": "bench", "role": "consumer"}).raise_for_status()
                made = api.post("/api/keys", json={"name": "bench-key", "user": "bench", "role": "consumer"})
                made.raise_for_status()
                key = str(made.json()["key"])
            conversations = seed(url, key, args.conversations, args.answered)
            upstream.tokens, upstream.gap = args.tokens, args.gap_ms / 1000
            upstream.sent.clear()
            server = {
                "new chat": server_ms(url, key, "/", args.loads),
                "open conversation": server_ms(url, key, f"/?c={conversations[-1]}", args.loads),
            }
            figures = browser_figures(url, key, conversations[-1], args.loads, args.messages, upstream)

    first = [d[0] for d in figures["delays"] if d]
    every = [x for d in figures["delays"] for x in d]
    print(f"\n{args.conversations:,} conversations stored; median of {args.loads} loads (ms):")
    print(f"  {'page':<20} {'server':>8} {'first paint':>12} {'first contentful':>17} {'listed':>7}")
    for name, p in figures["paints"].items():
        print(
            f"  {name:<20} {server[name]:8.1f} {p.get('first-paint', float('nan')):12.0f} "
            f"{p.get('first-contentful-paint', float('nan')):17.0f} {int(p['items listed']):7d}"
        )
    print(
        f"\ntoken delay, mock upstream wrote it -> in the page's DOM ({args.messages} answers, "
        f"{args.tokens} tokens each, {args.gap_ms:.0f} ms apart):"
    )
    print(f"  first token: median {statistics.median(first):.1f} ms, max {max(first):.1f} ms")
    every.sort()
    print(
        f"  every token: median {statistics.median(every):.1f} ms, "
        f"p95 {every[int(len(every) * 0.95) - 1]:.1f} ms, max {every[-1]:.1f} ms"
    )
    paint = max(p.get("first-contentful-paint", 0.0) for p in figures["paints"].values())
    paint_met = "met" if paint <= PAINT_BUDGET_MS else "NOT met"
    print(
        f"\ntargets: first paint <= {PAINT_BUDGET_MS:.0f} ms: {paint_met}"
        f" ({paint:.0f}); first token <= {TOKEN_BUDGET_MS:.0f} ms: "
        f"{'met' if max(first) <= TOKEN_BUDGET_MS else 'NOT met'} (max {max(first):.1f})"
    )
    save_result(
        "chat_page",
        {"conversations": args.conversations, "server_ms": server, **figures, "first_token_ms": first},
        load_before=load_before,
    )


if __name__ == "__main__":
    main()
