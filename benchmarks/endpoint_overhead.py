"""What calling an endpoint adds to a gateway call, measured in one process, side by side.

Three loops through `Gateway.chat` on one platform, the provider stubbed (it answers at once, so
only the gateway is timed), run in interleaved rounds:

    plain (model)          model="small": the peer, what a call to a model costs
    endpoint               model="bot": the registry generation read, the prompt rendered, params merged
    variants + guardrails  model="ab": the same, two weighted variants, an input and an output guardrail

Prints microseconds per call (median of the rounds' means, and the fastest round). Each call ends
its event-loop turn (`sleep(0)`), as a server's requests do: the stub never yields, and without it
a round would be one turn, sharing what is read once per turn (fmops.endpoints.reader).

    .venv/bin/python benchmarks/endpoint_overhead.py [--calls 300] [--rounds 15]
        [--database-url postgresql+psycopg://...]   (default: a fresh SQLite file)

Raw figures: benchmarks/results/endpoint_overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import load, save_result

from fmops.catalog import ModelSpec
from fmops.endpoints.schemas import EndpointSpec
from fmops.endpoints.service import EndpointService
from fmops.gateway.schemas import ChatCompletionRequest
from fmops.platform import Platform
from fmops.prompts.schemas import PromptSpec
from fmops.prompts.service import PromptService
from fmops.settings import load_settings
from fmops.store import Store, upgrade

ANSWER = {"role": "assistant", "content": "We open at nine."}
VARIABLES = {"company": "Acme", "question": "When are you open?"}


class Stub:
    """A provider that answers at once."""

    async def chat(self, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        return {
            "id": "stub",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "message": dict(ANSWER), "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16},
        }

    async def close(self) -> None:
        return None


def build(url: str, home: Path) -> tuple[Platform, Any]:
    store = Store(url)
    upgrade(store)
    platform = Platform.build(load_settings({"home": home, "database_url": url}), store)
    key = platform.auth.bootstrap(home / "admin.key")
    assert key is not None, "use an empty database"
    principal = platform.auth.authenticate(key)
    project = principal.project_id
    spec = ModelSpec(alias="small", provider="openai", model="m", base_url="http://127.0.0.1:9/v1")
    entry = platform.catalog.add(project, spec, trusted=True)
    platform.gateway._providers[entry.connection_id] = Stub()  # type: ignore[assignment]
    prompts = PromptService(store, platform.catalog)
    prompt = {
        "name": "support",
        "model": "small",
        "params": {"temperature": 0.2},
        "messages": [
            {"role": "system", "content": "You answer for {{ company }}. Be brief."},
            {"role": "user", "content": "{{ question }}"},
        ],
        "labels": ["production"],
    }
    prompts.push(project, PromptSpec.model_validate(prompt), author="bench", author_key_id=None)
    endpoints = EndpointService(store, platform.catalog, prompts)
    endpoints.create(project, EndpointSpec(name="bot", prompt="support"), actor="bench")
    checked = {
        "name": "ab",
        "prompt": "support",
        "variants": [{"name": "a"}, {"name": "b", "weight": 2}],
        "guardrails": [
            {
                "on": "input",
                "scorer": "regex",
                "config": {"pattern": "(?i)ignore previous"},
                "expect": "fail",
            },
            {"on": "output", "scorer": "length", "config": {"max": 2000}},
        ],
    }
    endpoints.create(project, EndpointSpec.model_validate(checked), actor="bench")
    return platform, principal


async def run(platform: Platform, principal: Any, calls: int, rounds: int) -> dict[str, list[float]]:
    gateway = platform.gateway
    cases = {
        "plain (model)": {"model": "small", "messages": [{"role": "user", "content": "When are you open?"}]},
        "endpoint": {"model": "bot", "messages": [], "variables": VARIABLES},
        "variants + guardrails": {
            "model": "ab",
            "messages": [],
            "variables": VARIABLES,
            "user": "u",
        },
    }
    requests = {name: ChatCompletionRequest.model_validate(body) for name, body in cases.items()}
    platform.tracer.start()
    for request in requests.values():  # warm caches and code paths
        for _ in range(200):
            await gateway.chat(principal, request)
    means: dict[str, list[float]] = {name: [] for name in requests}
    for _ in range(rounds):
        for name, request in requests.items():
            started = time.perf_counter()
            for _ in range(calls):
                await gateway.chat(principal, request)
                await asyncio.sleep(0)
            means[name].append((time.perf_counter() - started) / calls * 1e6)
    base = statistics.median(means["plain (model)"])
    for name, values in means.items():
        median = statistics.median(values)
        print(f"{name:34s} {median:8.1f} us/call (fastest round {min(values):7.1f})  +{median - base:7.1f}")
    await gateway.close()
    await platform.tracer.close()
    return means


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="fmops-bench-"))
    url = args.database_url or f"sqlite:///{home / 'fmops.db'}"
    load_before = load()
    platform, principal = build(url, home)
    means = asyncio.run(run(platform, principal, args.calls, args.rounds))
    platform.store.dispose()
    save_result(
        "endpoint_overhead",
        {
            "database": url.split(":", 1)[0],
            "calls": args.calls,
            "us_per_call_per_round": means,
            "median_us_per_call": {name: statistics.median(v) for name, v in means.items()},
        },
        load_before=load_before,
    )


if __name__ == "__main__":
    main()
