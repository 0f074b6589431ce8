"""A command that makes only plain (non-streaming) calls does not import aiohttp: ~0.1 s of start-up
(aiohttp's modules and the two TLS contexts they build), paid by `fmops eval run` on every CI gate."""

from __future__ import annotations

import subprocess
import sys

from support.mock_upstream import MockUpstream


def test_a_plain_call_imports_no_aiohttp(mock: MockUpstream) -> None:
    code = (
        "import asyncio, sys\n"
        "import fmops.evals.job\n"
        "from fmops.providers.base import ProviderConfig\n"
        "from fmops.providers.registry import get_provider_class\n"
        "async def main():\n"
        f"    provider = get_provider_class('openai')(ProviderConfig(model='m1', base_url='{mock.url}'))\n"
        "    answer = await provider.chat({'messages': [{'role': 'user', 'content': 'hi'}]}, timeout=10)\n"
        "    await provider.close()\n"
        "    return answer['choices'][0]['message']['content']\n"
        "print(asyncio.run(main()))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'aiohttp'))\n"
    )
    answer = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert answer.returncode == 0, answer.stderr
    reply, modules = answer.stdout.strip().splitlines()
    assert reply == "Hello from the mock upstream."
    assert modules == "[]"
