"""Every body told apart by a field (a discriminated union, e.g. a score's `kind`): sent without that
field, the 400 names it and the values it may take, instead of "body: must be a JSON object"."""

from __future__ import annotations

import re
from typing import Any

import httpx

from support.server import RunningServer


def _discriminators(
    node: Any, refs: dict[str, Any], seen: frozenset[str] = frozenset()
) -> dict[str, set[str]]:
    """{field: its values} for each discriminator in a schema, following $refs."""
    found: dict[str, set[str]] = {}
    if isinstance(node, dict):
        spec = node.get("discriminator")
        if isinstance(spec, dict):
            found.setdefault(spec["propertyName"], set()).update(spec.get("mapping", {}))
        ref = node.get("$ref")
        if isinstance(ref, str) and ref not in seen:
            node = {**node, "$ref": None, "_target": refs.get(ref.rsplit("/", 1)[-1])}
            seen = seen | {ref}
        for value in node.values():
            for key, values in _discriminators(value, refs, seen).items():
                found.setdefault(key, set()).update(values)
    elif isinstance(node, list):
        for value in node:
            for key, values in _discriminators(value, refs, seen).items():
                found.setdefault(key, set()).update(values)
    return found


def test_a_missing_discriminator_is_named_with_its_values(sqlite_server: RunningServer) -> None:
    document = httpx.get(sqlite_server.url + "/openapi.json", timeout=30).json()
    refs = document["components"]["schemas"]
    checked = []
    with sqlite_server.client() as client:
        for path, item in document["paths"].items():
            for method, operation in item.items():
                content = (operation.get("requestBody") or {}).get("content", {})
                schema = (content.get("application/json") or {}).get("schema")
                for field, values in _discriminators(schema, refs).items():
                    url = re.sub(r"\{[^}]+\}", "0" * 32, path)
                    response = client.request(method.upper(), url, json={"trace_id": "abc"})
                    assert response.status_code == 400, (method, path, response.text)
                    error = response.json()["error"]
                    assert error["param"] == field, (method, path, error)
                    expected = f"{field}: missing; one of {', '.join(sorted(values))}"
                    assert expected in error["message"], (method, path, error)
                    assert "must be a JSON object" not in error["message"]
                    checked.append((method, path))
    assert ("post", "/api/feedback") in checked, checked
