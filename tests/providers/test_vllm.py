"""The vllm provider against a vLLM-shaped mock (tests/support/mock_vllm.py): attaching with the real
CLI, a fine-tuned adapter loaded by name and called through the real gateway with the `openai` SDK,
LRU unloading at max_loras, and a launched server supervised (crash restart, stop)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path

import httpx
import pytest

from fmops.auth import DEFAULT_PROJECT
from fmops.catalog.entry import ModelEntry
from fmops.errors import UserError
from fmops.finetune.serving import vllm_adapter_spec
from fmops.providers.base import ProviderConfig, ProviderError
from fmops.providers.vllm import VLLMProvider
from fmops.providers.vllm_server import VLLMServer
from support.gateway import cli_in_process, gateway_server, sdk
from support.mock_upstream import MockUpstream
from support.mock_vllm import VLLMState, run_mock_vllm
from support.server import RunningServer, free_port

BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"
MOCK_COMMAND = f"{sys.executable} {Path(__file__).parents[1] / 'support' / 'mock_vllm.py'}"
HELLO = [{"role": "user", "content": "hello"}]
MANAGED_PORT = free_port()


def adapter(folder: Path) -> Path:
    """A PEFT adapter folder as a fine-tune writes it (the mock reads only its config)."""
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    (folder / "adapter_model.safetensors").write_bytes(b"")
    return folder


def cli(home: Path, *args: str) -> str:
    from fmops.cli import app

    out = io.StringIO()
    with cli_in_process(home), redirect_stdout(out):
        app(list(args), standalone_mode=False)
    return out.getvalue()


@pytest.fixture(scope="module")
def vllm() -> Iterator[tuple[str, VLLMState]]:
    with run_mock_vllm(BASE) as running:
        yield running


@pytest.fixture(scope="module")
def server(vllm: tuple[str, VLLMState], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A real `fmops up` over a catalog with `base` attached to the mock, `ft` its fine-tune (registered
    as the fine-tune job registers one), and `managed`, a vLLM (the mock) fmops launches itself."""
    url, _ = vllm
    home = tmp_path_factory.mktemp("vllm-gateway")
    added = cli(home, "models", "add", "base", "--provider", "vllm", "--base-url", url)
    assert "added base (vllm: " + BASE in added
    from fmops.cli.common import local_platform, project_id_of

    with cli_in_process(home):
        catalog, project = local_platform().catalog, project_id_of(DEFAULT_PROJECT)
        base = catalog.get(project, "base")
        spec = vllm_adapter_spec("ft", base, adapter(home / "finetunes" / "job1" / "adapter"))
        catalog.add(project, spec, trusted=True)
    launched = ["--provider", "vllm", "--launch", "--model", BASE, "--vllm-command", MOCK_COMMAND]
    cli(
        home,
        "models",
        "add",
        "managed",
        *launched,
        "--port",
        str(MANAGED_PORT),
        "--tensor-parallel-size",
        "2",
    )
    with gateway_server(home) as running:
        yield running
    # `fmops up` stopped: the vLLM server it launched stopped with it.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{MANAGED_PORT}/health", timeout=2)


def test_attach_then_adapter_by_name_through_the_gateway(
    server: RunningServer, vllm: tuple[str, VLLMState]
) -> None:
    _, state = vllm
    with sdk(server) as client:
        answer = client.chat.completions.create(model="base", messages=HELLO)
        assert answer.choices[0].message.content == f"Hello from {BASE} on vLLM."
        assert answer.model == "base"
        # The fine-tune: its adapter loaded into the running server, then called by name, streamed.
        stream = client.chat.completions.create(
            model="ft", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
        assert (
            "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from ft on vLLM."
        )
        usage = chunks[-1].usage
        assert usage is not None
        assert usage.completion_tokens == 5
        assert state.events[-2:] == [["load", "ft"], ["chat", "ft"]]
        assert state.adapters["ft"] == str(server.home / "finetunes" / "job1" / "adapter")
        # A restarted vLLM holds no runtime adapter: its 404 makes fmops load it again, once.
        state.adapters.clear()
        seen = len(state.events)
        again = client.chat.completions.create(model="ft", messages=HELLO)
        assert again.choices[0].message.content == "Hello from ft on vLLM."
        assert state.events[seen:] == [["load", "ft"], ["chat", "ft"]]


def test_launched_by_the_server(server: RunningServer) -> None:
    """`fmops up` launches the model's vLLM as it starts, before any call (and stops it: see the fixture)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            state = httpx.get(f"http://127.0.0.1:{MANAGED_PORT}/_control/state", timeout=1).json()
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "fmops up did not launch the managed vLLM"
            time.sleep(0.2)
    assert state["events"] == []  # no call yet
    assert state["args"]["tensor_parallel_size"] == 2
    with sdk(server) as client:
        answer = client.chat.completions.create(model="managed", messages=HELLO)
    assert answer.choices[0].message.content == f"Hello from {BASE} on vLLM."
    assert (server.home / "vllm" / f"vllm-{MANAGED_PORT}.log").is_file()


def test_api_refuses_launch_and_adapter_options(server: RunningServer) -> None:
    with server.client() as http:
        for options in ({"launch": True, "command": "touch /tmp/pwned"}, {"adapter": "/etc"}):
            spec = {"alias": "x", "provider": "vllm", "model": BASE, "options": options}
            refused = http.post("/api/models", json=spec)
            assert refused.status_code == 400, refused.text
            assert "only by the operator" in refused.json()["error"]["message"]


def test_cli_bad_input(tmp_path: Path, vllm: tuple[str, VLLMState], mock: MockUpstream) -> None:
    url, _ = vllm
    add = ["models", "add", "m", "--provider", "vllm"]
    cases = [
        (["--base-url", f"http://127.0.0.1:{free_port()}/v1"], "cannot reach a vLLM server"),
        (["--base-url", mock.url], "is not a vLLM OpenAI server"),
        (["--base-url", url, "--model", "other/model"], f"serves {BASE}, not 'other/model'"),
        (
            ["--launch", "--model", BASE, "--tensor-parallel-size", "0"],
            "--tensor-parallel-size must be 1 or more",
        ),
        (["--launch", "--model", BASE, "--max-loras", "0"], "options.max_loras must be a whole number"),
        (["--launch"], "--launch needs --model"),
        ([], "needs --base-url"),
    ]
    for args, message in cases:
        with pytest.raises(UserError, match=message.replace("(", r"\(")):
            cli(tmp_path, *add, *args)


@pytest.mark.anyio
async def test_lru_unload_at_max_loras(tmp_path: Path, vllm: tuple[str, VLLMState]) -> None:
    url, state = vllm
    providers = [
        VLLMProvider(
            ProviderConfig(
                BASE, url, options={"adapter": str(adapter(tmp_path / n)), "lora_name": n, "max_loras": 2}
            )
        )
        for n in ("a1", "a2", "a3")
    ]
    try:
        for p in (*providers, providers[1]):
            await p.chat({"messages": HELLO}, timeout=10)
        loads = [e for e in state.events if e[0] != "chat" and e[1].startswith("a")]
        assert loads == [["load", "a1"], ["load", "a2"], ["unload", "a1"], ["load", "a3"]]
        assert {"a2", "a3"} <= state.adapters.keys()
        assert "a1" not in state.adapters
    finally:
        for p in providers:
            await p.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.mark.anyio
async def test_launched_server_restarts_after_a_crash_and_stops_on_close(tmp_path: Path) -> None:
    port = free_port()
    options = {
        "launch": True,
        "command": MOCK_COMMAND,
        "port": port,
        "tensor_parallel_size": 2,
        "max_loras": 3,
        "log_dir": str(tmp_path / "vllm"),
        "restart_backoff": 0.1,
        "startup_timeout": 20,
    }
    base = VLLMProvider(ProviderConfig(BASE, options=options))
    entry = ModelEntry(alias="base", provider="vllm", provider_model=BASE, options=options)
    spec = vllm_adapter_spec("ft", entry, adapter(tmp_path / "adapter"))
    ft = VLLMProvider(ProviderConfig(spec.model, spec.base_url, options=spec.options))
    root = f"http://127.0.0.1:{port}"
    pids: list[int] = []
    try:
        answer = await base.chat({"messages": HELLO}, timeout=10)  # launches it
        assert answer["choices"][0]["message"]["content"] == f"Hello from {BASE} on vLLM."
        first = httpx.get(root + "/_control/state").json()
        args = first["args"]
        assert (args["model"], args["tensor_parallel_size"], args["max_loras"], args["enable_lora"]) == (
            BASE,
            2,
            3,
            True,
        )
        assert (await ft.chat({"messages": HELLO}, timeout=10))["model"] == "ft"  # runtime LoRA enabled
        # Another gateway process on this host finds the port's lock held: it uses the server, owns nothing.
        assert base.launch is not None
        other = VLLMServer(base.launch)
        await other.ensure_running()
        assert other.proc is None
        assert not other.owner
        await other.stop()
        assert httpx.get(root + "/health").status_code == 200

        async with httpx.AsyncClient(base_url=root, timeout=2) as http:
            await http.post("/_control/crash")
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:  # the supervisor sees the exit and starts a new process
                with contextlib.suppress(httpx.HTTPError):
                    now = (await http.get("/_control/state")).json()
                    if now["pid"] != first["pid"]:
                        pids += [first["pid"], now["pid"]]
                        break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the crashed vLLM was not restarted")
        assert not _alive(first["pid"])
        # The new process holds no adapter: the fine-tune's is loaded again on its next call.
        assert (await ft.chat({"messages": HELLO}, timeout=10))["model"] == "ft"
        assert httpx.get(root + "/_control/state").json()["events"] == [["load", "ft"], ["chat", "ft"]]
        log = (tmp_path / "vllm" / f"vllm-{port}.log").read_text()
        assert log.count("--- fmops: starting") == 2
        assert f"mock vLLM serving {BASE}" in log
    finally:
        await ft.close()
        await base.close()  # the last user stops the server
    assert pids
    assert not _alive(pids[-1])
    with pytest.raises(httpx.HTTPError):
        httpx.get(root + "/health", timeout=1)


@pytest.mark.anyio
async def test_launch_failures_are_reported_not_waited_on(tmp_path: Path) -> None:
    common = {"launch": True, "log_dir": str(tmp_path), "restart_backoff": 0.05, "startup_timeout": 60}
    missing = VLLMProvider(
        ProviderConfig(BASE, options={**common, "command": "/nonexistent/vllm", "port": free_port()})
    )
    for _ in range(2):  # each call says so at once, and tries again (vllm may be installed meanwhile)
        with pytest.raises(ProviderError, match="cannot launch vLLM: No such file or directory"):
            await missing.chat({"messages": HELLO}, timeout=10)
    await missing.close()
    dies = f"{sys.executable} -c \"print('CUDA out of memory'); raise SystemExit(3)\""
    crashing = VLLMProvider(ProviderConfig(BASE, options={**common, "command": dies, "port": free_port()}))
    started = time.monotonic()
    with pytest.raises(ProviderError, match=r"exited 3 times while starting: .*CUDA out of memory"):
        await crashing.chat({"messages": HELLO}, timeout=10)
    assert time.monotonic() - started < 30
    await crashing.close()
