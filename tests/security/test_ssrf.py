"""Issue 7, item 4: URLs in request bodies cannot reach internal services (SSRF); keys stay home.

The URL check (catalog/urls.py) is fed the address tricks known from SSRF reports: other spellings
of loopback, IPv6 wrappers of metadata addresses, metadata services outside link-local, parser
disagreements. Over HTTP, every body field that holds a URL is tried; per-request upstreams are
refused. At call time the gateway follows no redirect and connects to no address the check
refuses, even if DNS changed since (rebinding). Moving a model's base URL needs its key again, on
the API and on the operator's path alike.
"""

from __future__ import annotations

import socket
from typing import Any

import openai
import pytest
from aiohttp.abc import ResolveResult

from fmops.catalog import Catalog, ModelUpdate
from fmops.errors import UserError
from fmops.providers.base import ProviderConfig, ProviderError
from fmops.providers.openai import OpenAIProvider
from fmops.providers.resolver import UpstreamResolver
from fmops.providers.urls import check_upstream_url
from fmops.secrets import SecretBox
from fmops.settings import load_settings
from support.hostile import Hostile
from support.security import Tenant, add_trusted_model, error_of, server_store
from support.server import RunningServer

# Refused even when private upstreams are allowed (FMOPS_UPSTREAM_ALLOW_PRIVATE, the operator's CLI).
ALWAYS_REFUSED = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata.google.internal./computeMetadata/v1/",  # trailing dot
    "http://METADATA.GOOGLE.INTERNAL/",
    "http://100.100.100.200/latest/meta-data/",  # Alibaba Cloud
    "http://[fd00:ec2::254]/latest/meta-data/",  # AWS over IPv6
    "http://[::ffff:169.254.169.254]/",  # IPv4-mapped
    "http://[::ffff:a9fe:a9fe]/",
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64
    "http://[2002:a9fe:a9fe::1]/",  # 6to4
    "http://2852039166/",  # 169.254.169.254 as one number
    "http://0xa9fea9fe/",
    "http://0251.0376.0251.0376/",  # octal
    "http://169.254.43518/",
    "http://0.0.0.0:8000/",
    "http://0/",
    "http://[::]/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "file:///etc/passwd",
    "file://localhost/etc/passwd",
    "gopher://8.8.8.8:70/_x",
    "ftp://8.8.8.8/",
    "dict://8.8.8.8:11211/",
    "data:text/plain,hi",
    "//8.8.8.8/v1",
    "http:///etc/passwd",
    "https://user:pass@8.8.8.8/v1",  # credentials belong in api_key
    "http://8.8.8.8\\@127.0.0.1/",  # parsers disagree on the host
    "http://no-such-host.invalid/v1",  # cannot be checked, so refused
]
# Refused unless private upstreams are allowed.
PRIVATE = [
    "http://127.0.0.1:8000/v1",
    "http://localhost:8000/v1",
    "http://LOCALHOST:8000/v1",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://\u2460\u2461\u2466.0.0.1/",  # circled digits: IDNA folds them to 127.0.0.1
    "http://[::1]:8000/",
    "http://[::ffff:127.0.0.1]/",
    "http://[0:0:0:0:0:ffff:7f00:1]/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://[fd12:3456::1]/",
    " http://127.0.0.1/",
    "http://127.0.0.1#@8.8.8.8/",
]
ALLOWED = ["https://8.8.8.8/v1", "http://8.8.4.4:8080/v1/", "https://[2001:4860:4860::8888]/v1"]


def test_url_check_refuses_internal_addresses() -> None:
    for url in ALWAYS_REFUSED + PRIVATE:
        with pytest.raises(UserError) as refused:
            check_upstream_url(url, allow_private=False)
        assert refused.value.param == "base_url", url
    for url in ALWAYS_REFUSED:
        with pytest.raises(UserError):
            check_upstream_url(url, allow_private=True)
    for url in PRIVATE[:-2]:  # (the last two are written oddly: refused as such)
        assert check_upstream_url(url, allow_private=True)
    for url in ALLOWED:
        assert check_upstream_url(url, allow_private=False) == url.rstrip("/")


@pytest.mark.parametrize("secured", ["sqlite"], indirect=True)
def test_every_url_in_a_request_body_is_checked(secured: RunningServer, tenant_a: Tenant) -> None:
    refused = ALWAYS_REFUSED[:12] + PRIVATE[:6] + ["file:///etc/passwd"]
    model = {
        "alias": "ssrf-ok",
        "provider": "openai",
        "model": "m",
        "base_url": ALLOWED[0],
        "api_key": "sk-x1",
    }
    with tenant_a.client(secured, "engineer") as engineer:
        assert engineer.post("/api/models", json=model).status_code == 201
        rule = {"name": "ssrf-rule", "metric": "volume", "operator": ">", "threshold": 1}
        rule_id = engineer.post("/api/alerts", json=rule).json()["id"]
        for url in refused:
            calls: list[tuple[str, str, dict[str, Any], str]] = [
                ("POST", "/api/models", {**model, "alias": "ssrf", "base_url": url}, "base_url"),
                ("PATCH", "/api/models/ssrf-ok", {"base_url": url, "api_key": "sk-x2"}, "base_url"),
                ("POST", "/api/alerts", {**rule, "name": "ssrf-hook", "webhook_url": url}, "webhook_url"),
                ("PATCH", f"/api/alerts/{rule_id}", {"webhook_url": url}, "webhook_url"),
            ]
            for method, path, body, field in calls:
                error = error_of(engineer.request(method, path, json=body), 400)
                assert error["param"] == field, (method, path, url, error)
        assert engineer.get("/api/models/ssrf-ok").json()["base_url"] == ALLOWED[0], "unchanged"
        assert engineer.get(f"/api/alerts/{rule_id}").json()["webhook_url"] is None
        # Upstreams and their keys are never taken from a gateway request.
        for field in ("base_url", "api_base", "api_key"):
            body = {
                "model": "ssrf-ok",
                "messages": [{"role": "user", "content": "hi"}],
                field: "http://127.0.0.1/",
            }
            error = error_of(engineer.post("/v1/chat/completions", json=body), 400)
            assert field in error["message"]


def _chat(client: openai.OpenAI, model: str, stream: bool) -> str:
    messages: Any = [{"role": "user", "content": "hi"}]
    if stream:
        chunks = client.chat.completions.create(model=model, messages=messages, stream=True)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return client.chat.completions.create(model=model, messages=messages).choices[0].message.content or ""


@pytest.mark.parametrize("secured", ["sqlite"], indirect=True)
def test_gateway_follows_no_upstream_redirect(
    secured: RunningServer, tenant_a: Tenant, hostile: Hostile
) -> None:
    spec = {"alias": "redirector", "provider": "openai", "model": "redirect", "base_url": hostile.url}
    add_trusted_model(
        secured, tenant_a.project_id, {**spec, "api_key": "redirect-secret-1234", "max_retries": 0}
    )
    with openai.OpenAI(
        base_url=secured.url + "/v1", api_key=tenant_a.keys["consumer"], max_retries=0
    ) as client:
        for stream in (False, True):
            with pytest.raises(openai.APIStatusError) as failed:
                _chat(client, "redirector", stream)
            assert failed.value.status_code == 502
            assert "redirect" in str(failed.value.message)
    assert hostile.recorded == [], "the redirect was followed to the internal service"


@pytest.mark.anyio
async def test_connections_skip_addresses_dns_moved_to_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    # DNS rebinding: the name passed the check when saved; now it resolves to the metadata service.
    async def rebound(host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        addresses = ["169.254.169.254", "100.100.100.200"] if host == "rebind.test" else ["127.0.0.1"]
        return [
            ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
            for a in addresses
        ]

    monkeypatch.setattr("fmops.providers.addresses.lookup", rebound)
    resolver = UpstreamResolver()
    with pytest.raises(OSError, match="no upstream may use"):
        await resolver.resolve("rebind.test", 80)
    assert [r["host"] for r in await resolver.resolve("fine.test", 80)] == ["127.0.0.1"]

    provider = OpenAIProvider(ProviderConfig(model="m", base_url="http://rebind.test:9/v1", api_key="k" * 20))
    try:
        with pytest.raises(ProviderError) as failed:
            await provider.chat({"messages": [{"role": "user", "content": "hi"}]}, timeout=5)
        # Refused by the resolver before any connection (a plain resolver would have connected).
        assert "cannot reach the upstream: ClientConnectorDNSError" in failed.value.message
    finally:
        await provider.close()


def test_moving_a_base_url_needs_the_key_again(secured: RunningServer, tenant_a: Tenant) -> None:
    spec = {
        "alias": "movable",
        "provider": "openai",
        "model": "m",
        "base_url": "https://8.8.8.8/v1",
        "api_key": "sk-m1",
    }
    with tenant_a.client(secured, "engineer") as http:
        assert http.post("/api/models", json=spec).status_code == 201
        for move in (
            {"base_url": "https://8.8.4.4/v1"},
            {"base_url": "https://8.8.4.4/v1", "api_key": None},
            {"base_url": None},  # back to the provider's default host: a move too
            {"base_url": "HTTPS://8.8.8.8/v1"},  # spelled differently: treated as a move
        ):
            error = error_of(http.patch("/api/models/movable", json=move), 400)
            assert error["param"] == "api_key", (move, error)
        # The same URL again (as stored, or with a trailing slash) is not a move.
        same = http.patch("/api/models/movable", json={"base_url": "https://8.8.8.8/v1/", "max_retries": 1})
        assert same.status_code == 200, same.text
        assert http.get("/api/models/movable").json()["base_url"] == "https://8.8.8.8/v1"
    # The operator's path (`trusted`) may reach private hosts, but moves the key only with a new one.
    with server_store(secured) as store:
        settings = load_settings({"home": secured.home, "database_url": store.url})
        catalog = Catalog(store, settings, SecretBox.from_settings(settings))
        with pytest.raises(UserError) as refused:
            catalog.update(
                tenant_a.project_id, "movable", ModelUpdate(base_url="http://127.0.0.1:1/v1"), trusted=True
            )
        assert refused.value.param == "api_key"
        assert catalog.get(tenant_a.project_id, "movable").api_key == "sk-m1"
